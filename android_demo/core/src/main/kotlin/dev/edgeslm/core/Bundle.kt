package dev.edgeslm.core

import org.json.JSONException
import org.json.JSONObject
import java.io.File

private const val COPY_AGAIN = "copy the bundle again (adb push), or re-export it with `edgeslm export`"

/** One file the manifest lists with its size and sha256; [file] is resolved inside the bundle. */
class FileEntry(val path: String, val bytes: Long, val sha256: String, val file: File)

/** One exported model artifact and how an app loads it (manifest `artifacts[]` and its `load`). */
class Artifact(
    /** The artifact's name in the bundle (as golden.json's `greedy[].artifact`): its Core ML `package` folder,
     *  else its main `file`, e.g. "model-8da4w.pte" or "onnx-int4/model.onnx". */
    val name: String,
    /** edgeslm backend: executorch | onnx | coreml. */
    val backend: String,
    /** `load.runtime`: executorch | onnxruntime-genai | coreml. */
    val runtime: String,
    /** `load.runtime_version`: the runtime version edgeslm checked parity with (null when not given). */
    val runtimeVersion: String?,
    /** `load.path`: what the runtime opens (the .pte file, the ONNX folder, the .mlpackage). */
    val loadPath: File,
    /** `load.tokenizer`: the tokenizer file that runtime reads. */
    val tokenizer: File,
    /** passed | failed | runtime_not_run (other values are kept as written). */
    val parity: String,
    val recipe: String?,
    /** `role`: "model", or "draft" for a speculative-decoding draft (the manifest's `speculative.pairs` pairs it
     *  with its target; an app never chats with a draft alone). */
    val role: String,
    /** Every file to check before loading: `file`, its `files` entries (the bundle's tokenizer files are added by [Bundle.verify]). */
    val entries: List<FileEntry>,
    val json: JSONObject,
)

/**
 * An edgeslm bundle folder, read from its manifest.json ([open]). Opening checks the structure and every path;
 * [verify] checks the bytes (size and sha256) of what one artifact needs; [choose] picks the artifact this app can run.
 */
class Bundle private constructor(
    val dir: File,
    val manifest: JSONObject,
    val schemaVersion: String,
    /** passed | failed (the export's overall parity/latency status). */
    val status: String,
    val artifacts: List<Artifact>,
    val tokenizerFiles: List<FileEntry>,
    /** manifest `app` (prompt, stop, chat, generation, honoured, golden). */
    val app: JSONObject,
    /** `app.golden`, or null when the bundle has no golden vectors. */
    val golden: FileEntry?,
) {
    companion object {
        const val MANIFEST = "manifest.json"
        const val KIND = "edgeslm-bundle"
        const val READ_MAJOR = 1

        fun open(dir: File): Bundle {
            val mf = File(dir, MANIFEST)
            if (!dir.isDirectory) throw BundleException("$dir is not a folder", "pick the bundle folder written by `edgeslm export`")
            if (!mf.isFile) throw BundleException("$dir is not an edgeslm bundle (no $MANIFEST)", "pick the bundle folder written by `edgeslm export`")
            if (java.nio.file.Files.isSymbolicLink(mf.toPath()))
                throw BundleException("$MANIFEST is a symlink; a bundle holds plain files only", "copy the bundle again (adb push copies files)")
            val m = try {
                JSONObject(mf.readText(Charsets.UTF_8))
            } catch (e: JSONException) {
                throw BundleException("$MANIFEST is not a JSON object (${e.message})", REEXPORT)
            }
            val kind = m.valueOrNull("kind")
            if (kind != KIND) throw BundleException("$MANIFEST is not an edgeslm bundle manifest (kind is ${if (kind == null) "missing" else "\"$kind\""}, expected \"$KIND\")",
                "pick the bundle folder written by `edgeslm export`")
            val version = m.valueOrNull("schema_version") as? String
            val major = version?.let { Regex("^(\\d+)\\.(\\d+)$").find(it)?.groupValues?.get(1)?.toIntOrNull() }
                ?: throw BundleException("$MANIFEST has no valid schema_version (\"MAJOR.MINOR\"): ${m.opt("schema_version")}", REEXPORT)
            if (major != READ_MAJOR) throw BundleException("$MANIFEST has schema $version; this app reads schema $READ_MAJOR.x",
                if (major > READ_MAJOR) "update the app, or export with an edgeslm that writes schema $READ_MAJOR.x" else REEXPORT)
            val status = m.str("status", "top level")

            fun entry(o: JSONObject, where: String): FileEntry {
                val path = o.str("file", where)
                val sha = o.str("sha256", where)
                if (!Regex("^[0-9a-f]{64}$").matches(sha)) missing(where, "sha256", "64 lowercase hex digits")
                val bytes = o.long("bytes", where)
                if (bytes < 0) missing(where, "bytes", "a size >= 0")
                return FileEntry(path, bytes, sha, BundlePaths.resolve(dir, path, "$where.file"))
            }

            val artsJson = m.arr("artifacts", "top level").objects("artifacts")
            if (artsJson.isEmpty()) throw BundleException("$MANIFEST lists no artifacts", REEXPORT)
            val artifacts = artsJson.mapIndexed { i, a ->
                val where = "artifacts[$i]"
                val main = entry(a, where)
                val files = (a.optJSONArray("files")?.objects("$where.files") ?: emptyList())
                    .mapIndexed { j, f -> entry(f, "$where.files[$j]") }
                val pkg = a.strOrNull("package", where)?.also { BundlePaths.resolve(dir, it, "$where.package") }
                val load = a.obj("load", where)
                Artifact(
                    name = pkg ?: main.path,
                    backend = a.str("backend", where),
                    runtime = load.str("runtime", "$where.load"),
                    runtimeVersion = load.strOrNull("runtime_version", "$where.load"),
                    loadPath = BundlePaths.resolve(dir, load.str("path", "$where.load"), "$where.load.path"),
                    tokenizer = BundlePaths.resolve(dir, load.str("tokenizer", "$where.load"), "$where.load.tokenizer"),
                    parity = a.str("parity", where),
                    recipe = a.strOrNull("recipe", where),
                    role = a.strOrNull("role", where) ?: "model",
                    entries = listOf(main) + files,
                    json = a,
                )
            }
            val tokenizerFiles = m.obj("tokenizer", "top level").arr("files", "tokenizer").objects("tokenizer.files")
                .mapIndexed { i, f -> entry(f, "tokenizer.files[$i]") }
            (m.optJSONArray("reports")?.objects("reports") ?: emptyList()).forEachIndexed { i, r -> entry(r, "reports[$i]") }
            val app = m.obj("app", "top level")
            for (k in listOf("prompt", "stop", "chat", "generation", "honoured")) app.obj(k, "app")
            val golden = app.objOrNull("golden", "app")?.let { entry(it, "app.golden") }
            return Bundle(dir, m, version, status, artifacts, tokenizerFiles, app, golden)
        }
    }

    /** Every file [artifact] needs: its own entries, then the bundle's tokenizer files, each once. */
    fun filesOf(artifact: Artifact): List<FileEntry> =
        (artifact.entries + tokenizerFiles).distinctBy { it.file.path }

    /**
     * Checks size then sha256 of every file [artifact] needs, and that its load path and tokenizer exist.
     * Refuses (BundleException naming the file) a missing, truncated, grown or modified file.
     */
    fun verify(artifact: Artifact) {
        for (e in filesOf(artifact)) verifyFile(e)
        if (!artifact.loadPath.exists())
            throw BundleException("${artifact.loadPath.relativeTo(dir.canonicalFile)} (load.path of ${artifact.name}) is missing", COPY_AGAIN)
        val tokListed = filesOf(artifact).any { it.file == artifact.tokenizer }
        if (!tokListed) throw BundleException("load.tokenizer of ${artifact.name} (${artifact.tokenizer.relativeTo(dir.canonicalFile)}) is not a file the manifest lists with a sha256", REEXPORT)
    }

    /** Checks one listed file's size and sha256 (used for the golden vectors and by [verify]). */
    fun verifyFile(e: FileEntry) {
        if (!e.file.isFile) throw BundleException("${e.path} is missing from the bundle", COPY_AGAIN)
        val size = e.file.length()
        if (size != e.bytes)
            throw BundleException("${e.path} is $size bytes but the manifest says ${e.bytes} (${if (size < e.bytes) "truncated" else "grown"}: an incomplete or altered copy)", COPY_AGAIN)
        val sha = sha256Hex(e.file)
        if (sha != e.sha256)
            throw BundleException("${e.path} does not match the manifest (sha256 $sha, expected ${e.sha256}): the file was modified or corrupted", COPY_AGAIN)
    }

    /**
     * The artifact this app runs: the first (in manifest order) whose `load.runtime` is in [available].
     * Refused when the bundle's status is "failed" or that artifact's parity is "failed" (reason in the message),
     * or when no artifact's runtime is available.
     */
    fun choose(available: Set<String>): Artifact {
        if (status == "failed") {
            val bad = artifacts.filter { it.parity == "failed" }.joinToString { "${it.name} (${it.runtime})" }
            throw BundleException("this bundle failed its export checks (status \"failed\"" +
                (if (bad.isNotEmpty()) "; parity failed for $bad" else "; see parity.md / latency.json in the bundle") + ")",
                "fix the export (see the bundle's parity.md) and export again; a failed bundle is not loaded")
        }
        val models = artifacts.filter { it.role != "draft" }  // a draft only proposes tokens for its target
        val a = models.firstOrNull { it.runtime in available }
            ?: throw BundleException("no model artifact in this bundle runs on this app's runtimes (${available.sorted().joinToString()}); " +
                "the bundle has ${artifacts.joinToString { "${it.name} for ${it.runtime}" + if (it.role == "draft") " (draft)" else "" }}",
                "export with a backend this app supports (`edgeslm export -b executorch -b onnx`)")
        if (a.parity == "failed")
            throw BundleException("${a.name} (${a.runtime}) failed its parity check at export (parity \"failed\")",
                "fix the export (see the bundle's parity.md) and export again; a failed artifact is not loaded")
        return a
    }

    /** golden.json, size and sha256 checked against `app.golden`. */
    fun readGolden(): JSONObject {
        val g = golden ?: throw BundleException("this bundle has no golden vectors (app.golden)", REEXPORT)
        verifyFile(g)
        return try { JSONObject(g.file.readText(Charsets.UTF_8)) } catch (e: JSONException) {
            throw BundleException("${g.path} is not a JSON object (${e.message})", REEXPORT)
        }
    }

    fun chatTemplate(): ChatTemplate = ChatTemplate.from(app.obj("chat", "app"))

    fun settingsFor(artifact: Artifact): GenerationSettings = GenerationSettings.from(app, artifact.runtime)
}
