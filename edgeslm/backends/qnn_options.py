"""The target file's ``[qnn]`` section, shared by both Qualcomm HTP backends (ONNX QDQ and ExecuTorch's QNN)."""

from __future__ import annotations

from pathlib import Path

from edgeslm.errors import InputError

SECTION = "qnn"
# SoCs ExecuTorch 1.5.1's Qualcomm backend compiles for (executorch.backends.qualcomm.serialization.qc_schema
# QcomChipset, copied so target files parse without importing executorch; tests/test_npu.py checks the copy).
QNN_SOCS = ("SA8295", "SA8797", "SC8380XP", "SM8350", "SM8450", "SM8475", "SM8550", "SM8650", "SM8750", "SM8850",
            "SSG2115P", "SSG2125P", "SXR1230P", "SXR2230P", "SXR2330P", "QCS9100", "SAR2230P", "SA8255", "SW6100",
            "QCM6490", "SM8845")
QNN_KEYS = {"calibration_text", "calibration_samples", "provider_options", "soc"}


def parse_qnn_options(table, path: Path) -> dict:
    """``[qnn]``: text the activation ranges are calibrated on (a file, relative to the target file; default: the
    built-in calibration text), how many windows of it, the QNN EP options written into the ONNX folder's
    genai_config.json, and the SoC ExecuTorch's Qualcomm backend compiles for."""
    from edgeslm.gates import _suggest
    from edgeslm.target import _bad, _is_int, _provider_options, _reject_unknown, _text

    if not isinstance(table, dict):
        raise _bad(path, "qnn", "a table ([qnn])", table, '[qnn] with soc = "SM8650"')
    _reject_unknown(table, QNN_KEYS, "qnn", path)
    out: dict = {}
    if "calibration_text" in table:
        text = _text(table, "calibration_text", path, 'calibration_text = "calibration.txt"', empty_ok=False)
        f = (path.parent / text) if not Path(text).is_absolute() else Path(text)
        if not f.is_file():
            raise InputError(f"qnn.calibration_text in target file {path} names {f}, which is not a file",
                             "give the path of a UTF-8 text file, relative to the target file")
        out["calibration_text"] = f.resolve()
    if "calibration_samples" in table:
        v = table["calibration_samples"]
        if not _is_int(v) or not 1 <= v <= 4096:
            raise _bad(path, "qnn.calibration_samples", "a whole number of text windows in 1..4096", v,
                       "calibration_samples = 32")
        out["calibration_samples"] = v
    if "provider_options" in table:
        out["provider_options"] = _provider_options(
            table["provider_options"], path, "qnn.provider_options",
            'provider_options = [{ qnn = { backend_path = "libQnnHtp.so" } }]')
    if "soc" in table:
        soc = _text(table, "soc", path, 'soc = "SM8650"', empty_ok=False)
        if soc not in QNN_SOCS:
            raise InputError(f"qnn.soc in target file {path} is {soc!r}, which ExecuTorch's Qualcomm backend does "
                             "not know", f"{_suggest(soc, QNN_SOCS)}supported SoCs are {', '.join(QNN_SOCS)}")
        out["soc"] = soc
    return out


def qnn_options(target) -> dict:
    return target.options.get(SECTION, {})
