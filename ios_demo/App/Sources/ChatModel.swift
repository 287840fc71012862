import CoreML
import EdgeSLMCore
import Foundation
import SwiftUI

/// One bundle folder in the app's library (Application Support/Bundles), as the list shows it.
struct BundleRow: Identifiable {
    let id: URL
    let name: String
    /// "edgeslm/demo · status passed", or "will be refused: …" when its manifest cannot be read.
    let summary: String
    /// "model-int4.mlpackage (coreml, parity runtime_not_run)" per artifact.
    let artifacts: [String]
}

struct ChatLine: Identifiable {
    let id = UUID()
    let role: String
    var text: String
}

/// The app's state: the bundle library, the open bundle and its engine, the conversation.
@MainActor
final class ChatModel: ObservableObject {
    enum Screen {
        case library
        case refused(folder: String, error: BundleError)
        case chat
    }

    @Published var screen: Screen = .library
    @Published var rows: [BundleRow] = []
    @Published var progress: String?
    @Published var lines: [ChatLine] = []
    @Published var stats: GenerationStats?
    @Published var generating = false
    @Published var computeUnits: MLComputeUnits = .all
    @Published private(set) var header = ""
    @Published private(set) var settingsNote = ""
    @Published private(set) var chatMode = ""

    private(set) var bundle: SLMBundle?
    private(set) var artifact: Artifact?
    private var engine: Engine?
    private var settings: GenerationSettings?
    private var template: ChatTemplate?

    /// The runtimes this build has: Core ML (iOS 18+) and ExecuTorch.
    nonisolated static var available: Set<String> {
        if #available(iOS 18.0, macOS 15.0, *) { return ["coreml", "executorch"] }
        return ["executorch"]
    }

    static var libraryDir: URL {
        let d = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
            .appendingPathComponent("Bundles", isDirectory: true)
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Bundles in the library, plus folders copied into the app's Documents (Finder file sharing, devicectl).
    func refresh() {
        let fm = FileManager.default
        let docs = fm.urls(for: .documentDirectory, in: .userDomainMask)[0]
        var found: [URL] = []
        for root in [ChatModel.libraryDir, docs] {
            let items = (try? fm.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
            found += items.filter { fm.fileExists(atPath: $0.appendingPathComponent(SLMBundle.manifestName).path) }
        }
        rows = found.sorted { $0.lastPathComponent < $1.lastPathComponent }.map { url in
            do {
                let b = try SLMBundle.open(url)
                return BundleRow(id: url, name: url.lastPathComponent,
                                 summary: "\(b.modelId ?? "model") · status \(b.status)",
                                 artifacts: b.artifacts.map { "\($0.name) (\($0.runtime), parity \($0.parity))" })
            } catch let e as BundleError {
                return BundleRow(id: url, name: url.lastPathComponent, summary: "will be refused: \(e.problem)", artifacts: [])
            } catch {
                return BundleRow(id: url, name: url.lastPathComponent, summary: "will be refused: \(error.localizedDescription)", artifacts: [])
            }
        }
    }

    /// A folder picked in the Files app: copied into the library (the picker's access ends with the session).
    func importFolder(_ url: URL) {
        let scoped = url.startAccessingSecurityScopedResource()
        defer { if scoped { url.stopAccessingSecurityScopedResource() } }
        let dst = ChatModel.libraryDir.appendingPathComponent(url.lastPathComponent, isDirectory: true)
        do {
            if FileManager.default.fileExists(atPath: dst.path) { try FileManager.default.removeItem(at: dst) }
            try FileManager.default.copyItem(at: url, to: dst)
            refresh()
            Task { await open(dst) }
        } catch {
            screen = .refused(folder: url.lastPathComponent,
                              error: BundleError("could not copy \(url.lastPathComponent) into the app: \(error.localizedDescription)",
                                                 fix: "pick the bundle folder again, or copy it with Finder file sharing"))
        }
    }

    /// Open → choose → verify (sha256 of every file) → load, each refusal shown with its fix.
    func open(_ dir: URL) async {
        close()
        progress = "Opening \(dir.lastPathComponent): checking sha256 of every file…"
        defer { progress = nil }
        do {
            let units = computeUnits
            let (b, a) = try await Task.detached(priority: .userInitiated) { () throws -> (SLMBundle, Artifact) in
                let b = try SLMBundle.open(dir)
                let a = try b.choose(available: ChatModel.available)
                try b.verify(a)
                return (b, a)
            }.value
            let e: Engine
            if a.runtime == "coreml", #available(iOS 18.0, macOS 15.0, *) {
                e = CoreMLEngine(computeUnits: units)
            } else {
                e = ExecuTorchEngine()
            }
            progress = a.runtime == "coreml" ? "Compiling \(a.name) for this device…" : "Loading \(a.name)…"
            try await e.load(bundle: b, artifact: a)
            let s = try b.settings(for: a)
            let t = try b.chatTemplate()
            bundle = b; artifact = a; engine = e; settings = s; template = t
            header = "\(a.name) on \(e.detail) · exported with \(a.runtime) \(a.runtimeVersion ?? "?"), parity \(a.parity)"
            let applied = s.values.keys.sorted().map { "\($0)=\(describe(s.values[$0]!))" }.joined(separator: ", ")
            let ignored = s.ignored.keys.sorted().joined(separator: ", ")
            settingsNote = "applied: \(applied)" + (ignored.isEmpty ? "" : " · not applied by \(a.runtime): \(ignored)")
            chatMode = t.kind == ChatTemplate.simple ? "chat (the model's template)" : "completion: \(t.reason ?? "no chat template")"
            lines = []
            stats = nil
            screen = .chat
        } catch let err as BundleError {
            screen = .refused(folder: dir.lastPathComponent, error: err)
        } catch {
            screen = .refused(folder: dir.lastPathComponent,
                              error: BundleError(error.localizedDescription, fix: "pick another bundle, or export it again"))
        }
    }

    private func describe(_ v: JSONValue) -> String {
        switch v {
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return s
        default: return "…"
        }
    }

    /// The prompt for the conversation so far: the chat template's rendering, or (kind "none") the raw text.
    private func prompt() throws -> String {
        guard let t = template else { return "" }
        let history = lines.filter { $0.role != "error" }
        if t.kind == ChatTemplate.none { return history.last?.text ?? "" }
        return try t.render(history.map { Message($0.role, $0.text) }, addGenerationPrompt: true)
    }

    func send(_ text: String) {
        guard let engine = engine, let settings = settings, !generating, !text.isEmpty else { return }
        lines.append(ChatLine(role: "user", text: text))
        let p: String
        do { p = try prompt() } catch let e as BundleError {
            lines.append(ChatLine(role: "error", text: "\(e.problem). \(e.fix)")); return
        } catch { return }
        lines.append(ChatLine(role: "assistant", text: ""))
        let index = lines.count - 1
        generating = true
        stats = nil
        let box = EngineBox(engine)
        Task.detached(priority: .userInitiated) {
            do {
                let st = try box.engine.generate(prompt: p, settings: settings) { piece in
                    Task { @MainActor in self.lines[index].text += piece }
                }
                await MainActor.run { self.stats = st; self.generating = false }
            } catch {
                let msg = (error as? BundleError).map { "\($0.problem). \($0.fix)" } ?? error.localizedDescription
                await MainActor.run { self.lines.append(ChatLine(role: "error", text: msg)); self.generating = false }
            }
        }
    }

    func stop() { engine?.stop() }

    func close() {
        engine?.close()
        engine = nil; bundle = nil; artifact = nil; settings = nil; template = nil
    }
}

/// Hands the engine to the generating task (one generate() at a time: the UI disables Send meanwhile).
final class EngineBox: @unchecked Sendable {
    let engine: Engine
    init(_ engine: Engine) { self.engine = engine }
}
