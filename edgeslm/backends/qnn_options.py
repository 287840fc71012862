"""The target file's ``[qnn]`` section, shared by both Qualcomm HTP backends (ONNX QDQ and ExecuTorch's QNN)."""

from __future__ import annotations

from pathlib import Path

from edgeslm.backends.genai_options import provider_options
from edgeslm.errors import InputError
from edgeslm.toml_kit import bad, reject_unknown, suggest, text, whole

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
    where = f"target file {path}"
    if not isinstance(table, dict):
        raise bad("qnn", where, "a table ([qnn])", table, '[qnn] with soc = "SM8650"')
    reject_unknown(table, QNN_KEYS, f"qnn of {where}")
    out: dict = {}
    if "calibration_text" in table:
        name = text(table["calibration_text"], "calibration_text", where, 'calibration_text = "calibration.txt"',
                    empty_ok=False)
        f = (path.parent / name) if not Path(name).is_absolute() else Path(name)
        if not f.is_file():
            raise InputError(f"qnn.calibration_text in target file {path} names {f}, which is not a file",
                             "give the path of a UTF-8 text file, relative to the target file")
        out["calibration_text"] = f.resolve()
    if "calibration_samples" in table:
        out["calibration_samples"] = whole(table["calibration_samples"], "qnn.calibration_samples", where, 1, 4096,
                                           "a whole number of text windows in 1..4096", "calibration_samples = 32")
    if "provider_options" in table:
        out["provider_options"] = provider_options(
            table["provider_options"], path, "qnn.provider_options",
            'provider_options = [{ qnn = { backend_path = "libQnnHtp.so" } }]')
    if "soc" in table:
        soc = text(table["soc"], "soc", where, 'soc = "SM8650"', empty_ok=False)
        if soc not in QNN_SOCS:
            raise InputError(f"qnn.soc in target file {path} is {soc!r}, which ExecuTorch's Qualcomm backend does "
                             "not know", f"{suggest(soc, QNN_SOCS)}supported SoCs are {', '.join(QNN_SOCS)}")
        out["soc"] = soc
    return out


def qnn_options(target) -> dict:
    return target.options.get(SECTION, {})
