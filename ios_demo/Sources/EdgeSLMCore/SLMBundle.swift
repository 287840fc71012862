import Foundation

/// One file the manifest lists with its size and sha256; `url` is resolved inside the bundle.
public struct FileEntry: Equatable, Sendable {
    public let path: String
    public let bytes: Int64
    public let sha256: String
    public let url: URL
}

/// One exported model artifact and how an app loads it (manifest `artifacts[]` and its `load`).
public struct Artifact: Sendable {
    /// The artifact's name in the bundle (golden.json's `greedy[].artifact`): its Core ML `package` folder, else
    /// its main `file`, e.g. "model-int4.mlpackage", "model-8da4w.pte".
    public let name: String
    /// edgeslm backend: executorch | onnx | coreml.
    public let backend: String
    /// `load.runtime`: executorch | onnxruntime-genai | coreml.
    public let runtime: String
    /// `load.runtime_version`: the runtime version edgeslm checked parity with.
    public let runtimeVersion: String?
    /// `load.path`: what the runtime opens (the .pte file, the ONNX folder, the .mlpackage).
    public let loadPath: URL
    /// `load.tokenizer`: the tokenizer file that runtime reads.
    public let tokenizer: URL
    /// passed | failed | runtime_not_run (other values are kept as written).
    public let parity: String
    public let recipe: String?
    /// `role`: "model", or "draft" for a speculative-decoding draft (the manifest's `speculative.pairs` pairs it with
    /// its target; an app never chats with a draft alone).
    public let role: String
    /// Every file to check before loading: `file` and its `files` entries (the tokenizer files are added by verify).
    public let entries: [FileEntry]
    /// Input / output names the artifact records (Core ML: tokens, input_pos → logits), when it records them.
    public let inputNames: [String]
    public let outputNames: [String]
    /// Artifact metadata (Core ML: the package's user-defined metadata, e.g. "edgeslm.context_length").
    public let metadata: [String: JSONValue]
}

/// An edgeslm bundle folder read from its manifest.json (`open`). Opening checks the structure and every path;
/// `verify` checks the bytes (size and sha256) of what one artifact needs; `choose` picks the artifact this app can
/// run. (Named SLMBundle, not Bundle, so that it never shadows Foundation.Bundle in files that import both.)
public final class SLMBundle {
    public static let manifestName = "manifest.json"
    public static let kind = "edgeslm-bundle"
    public static let readMajor = 1

    public let dir: URL
    public let schemaVersion: String
    /// passed | failed (the export's overall verdict).
    public let status: String
    public let modelId: String?
    public let artifacts: [Artifact]
    public let tokenizerFiles: [FileEntry]
    public let golden: FileEntry?
    let app: AppJSON

    private init(dir: URL, m: ManifestJSON, artifacts: [Artifact], tokenizerFiles: [FileEntry], golden: FileEntry?) {
        self.dir = dir
        self.schemaVersion = m.schema_version
        self.status = m.status
        self.modelId = m.model?.id
        self.artifacts = artifacts
        self.tokenizerFiles = tokenizerFiles
        self.golden = golden
        self.app = m.app
    }

    public static func open(_ dir: URL) throws -> SLMBundle {
        let pick = "pick the bundle folder written by `edgeslm export`"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw BundleError("\(dir.path) is not a folder", fix: pick)
        }
        let mf = dir.appendingPathComponent(manifestName)
        if BundlePaths.isSymlink(mf) {
            throw BundleError("\(manifestName) is a symlink; a bundle holds plain files only", fix: copyAgain)
        }
        guard FileManager.default.fileExists(atPath: mf.path, isDirectory: &isDir), !isDir.boolValue else {
            throw BundleError("\(dir.path) is not an edgeslm bundle (no \(manifestName))", fix: pick)
        }
        let data = try Data(contentsOf: mf)
        // header first, leniently: kind and schema decide whether the rest is read at all
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw BundleError("\(manifestName) is not a JSON object", fix: reexport)
        }
        let kindValue = top["kind"] as? String
        if kindValue != kind {
            let shown = kindValue.map { "\"\($0)\"" } ?? "missing"
            throw BundleError("\(manifestName) is not an edgeslm bundle manifest (kind is \(shown), expected \"\(kind)\")", fix: pick)
        }
        guard let version = top["schema_version"] as? String,
              version.range(of: "^[0-9]+\\.[0-9]+$", options: .regularExpression) != nil,
              let major = Int(version.split(separator: ".")[0]) else {
            throw BundleError("\(manifestName) has no valid schema_version (\"MAJOR.MINOR\"): \(top["schema_version"] ?? "missing")", fix: reexport)
        }
        if major != readMajor {
            throw BundleError("\(manifestName) has schema \(version); this app reads schema \(readMajor).x",
                              fix: major > readMajor ? "update the app, or export with an edgeslm that writes schema \(readMajor).x" : reexport)
        }
        let m: ManifestJSON
        do {
            m = try JSONDecoder().decode(ManifestJSON.self, from: data)
        } catch let e as DecodingError {
            throw manifestError(e)
        }

        func entry(_ f: FileJSON, _ place: String) throws -> FileEntry {
            if f.sha256.range(of: "^[0-9a-f]{64}$", options: .regularExpression) == nil {
                throw missing(place, "sha256", "64 lowercase hex digits")
            }
            if f.bytes < 0 { throw missing(place, "bytes", "a size >= 0") }
            return FileEntry(path: f.file, bytes: f.bytes, sha256: f.sha256,
                             url: try BundlePaths.resolve(dir, f.file, where: "\(place).file"))
        }

        if m.artifacts.isEmpty { throw BundleError("\(manifestName) lists no artifacts", fix: reexport) }
        var artifacts: [Artifact] = []
        for (i, a) in m.artifacts.enumerated() {
            let place = "artifacts[\(i)]"
            let main = try entry(FileJSON(file: a.file, bytes: a.bytes, sha256: a.sha256), place)
            var files = [main]
            for (j, f) in (a.files ?? []).enumerated() { files.append(try entry(f, "\(place).files[\(j)]")) }
            if let pkg = a.package { _ = try BundlePaths.resolve(dir, pkg, where: "\(place).package") }
            artifacts.append(Artifact(
                name: a.package ?? a.file,
                backend: a.backend,
                runtime: a.load.runtime,
                runtimeVersion: a.load.runtime_version,
                loadPath: try BundlePaths.resolve(dir, a.load.path, where: "\(place).load.path"),
                tokenizer: try BundlePaths.resolve(dir, a.load.tokenizer, where: "\(place).load.tokenizer"),
                parity: a.parity,
                recipe: a.recipe,
                role: a.role ?? "model",
                entries: files,
                inputNames: (a.inputs ?? []).map(\.name),
                outputNames: (a.outputs ?? []).map(\.name),
                metadata: a.metadata ?? [:]))
        }
        var tokenizerFiles: [FileEntry] = []
        for (i, f) in m.tokenizer.files.enumerated() { tokenizerFiles.append(try entry(f, "tokenizer.files[\(i)]")) }
        for (i, r) in (m.reports ?? []).enumerated() { _ = try entry(r, "reports[\(i)]") }
        let golden = try m.app.golden.map { try entry($0, "app.golden") }
        return SLMBundle(dir: dir, m: m, artifacts: artifacts, tokenizerFiles: tokenizerFiles, golden: golden)
    }

    /// Every file `artifact` needs: its own entries, then the bundle's tokenizer files, each once.
    public func files(of artifact: Artifact) -> [FileEntry] {
        var seen = Set<String>()
        return (artifact.entries + tokenizerFiles).filter { seen.insert($0.url.path).inserted }
    }

    /// Checks size then sha256 of every file `artifact` needs, and that its load path and tokenizer exist.
    /// Refuses (BundleError naming the file) a missing, truncated, grown or modified file.
    public func verify(_ artifact: Artifact) throws {
        let needed = files(of: artifact)
        for e in needed { try verifyFile(e) }
        if !FileManager.default.fileExists(atPath: artifact.loadPath.path) {
            throw BundleError("\(relative(artifact.loadPath)) (load.path of \(artifact.name)) is missing", fix: copyAgain)
        }
        if !needed.contains(where: { $0.url.path == artifact.tokenizer.path }) {
            throw BundleError("load.tokenizer of \(artifact.name) (\(relative(artifact.tokenizer))) is not a file the manifest lists with a sha256", fix: reexport)
        }
    }

    /// Checks one listed file's size and sha256 (used for the golden vectors and by `verify`).
    public func verifyFile(_ e: FileEntry) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: e.url.path, isDirectory: &isDir), !isDir.boolValue else {
            throw BundleError("\(e.path) is missing from the bundle", fix: copyAgain)
        }
        let attrs = try FileManager.default.attributesOfItem(atPath: e.url.path)
        let size = (attrs[.size] as? NSNumber)?.int64Value ?? -1
        if size != e.bytes {
            throw BundleError("\(e.path) is \(size) bytes but the manifest says \(e.bytes) (\(size < e.bytes ? "truncated" : "grown"): an incomplete or altered copy)", fix: copyAgain)
        }
        let sha = try sha256Hex(of: e.url)
        if sha != e.sha256 {
            throw BundleError("\(e.path) does not match the manifest (sha256 \(sha), expected \(e.sha256)): the file was modified or corrupted", fix: copyAgain)
        }
    }

    /// The artifact this app runs: the first (manifest order) whose `load.runtime` is in `available`. Refused when
    /// the bundle's status is "failed" or that artifact's parity is "failed", or when no runtime is available.
    /// Parity "runtime_not_run" (e.g. Core ML on Linux at export) is loaded.
    public func choose(available: Set<String>) throws -> Artifact {
        if status == "failed" {
            let bad = artifacts.filter { $0.parity == "failed" }.map { "\($0.name) (\($0.runtime))" }.joined(separator: ", ")
            throw BundleError("this bundle failed its export checks (status \"failed\"" +
                              (bad.isEmpty ? "; see parity.md / latency.json in the bundle" : "; parity failed for \(bad)") + ")",
                              fix: "fix the export (see the bundle's parity.md) and export again; a failed bundle is not loaded")
        }
        let models = artifacts.filter { $0.role != "draft" }  // a draft only proposes tokens for its target
        guard let a = models.first(where: { available.contains($0.runtime) }) else {
            throw BundleError("no model artifact in this bundle runs on this app's runtimes (\(available.sorted().joined(separator: ", "))); " +
                              "the bundle has \(artifacts.map { "\($0.name) for \($0.runtime)" + ($0.role == "draft" ? " (draft)" : "") }.joined(separator: ", "))",
                              fix: "export with a backend this app supports (`edgeslm export --target ios`)")
        }
        if a.parity == "failed" {
            throw BundleError("\(a.name) (\(a.runtime)) failed its parity check at export (parity \"failed\")",
                              fix: "fix the export (see the bundle's parity.md) and export again; a failed artifact is not loaded")
        }
        return a
    }

    /// golden.json, size and sha256 checked against `app.golden`, as a JSON object.
    public func readGolden() throws -> [String: Any] {
        guard let g = golden else { throw BundleError("this bundle has no golden vectors (app.golden)", fix: reexport) }
        try verifyFile(g)
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(contentsOf: g.url))) as? [String: Any] else {
            throw BundleError("\(g.path) is not a JSON object", fix: reexport)
        }
        return obj
    }

    public func chatTemplate() throws -> ChatTemplate { try ChatTemplate(app.chat) }

    public func settings(for artifact: Artifact) throws -> GenerationSettings {
        try GenerationSettings(app: app, runtime: artifact.runtime)
    }

    func relative(_ url: URL) -> String {
        let root = dir.standardizedFileURL.resolvingSymlinksInPath().path + "/"
        return url.path.hasPrefix(root) ? String(url.path.dropFirst(root.count)) : url.path
    }
}
