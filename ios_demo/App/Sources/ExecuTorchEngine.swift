import EdgeSLMCore
import ExecuTorchLLM
import Foundation

/// The bundle's .pte through ExecuTorch's iOS LLM runner (`TextRunner`, module ExecuTorchLLM): the runner reads the
/// bundle's tokenizer.json itself, applies temperature and max_new_tokens (what `app.honoured.executorch` says) and
/// hands back text per token; BOS is added exactly when `app.prompt.add_bos` is true (`bosCount`).
final class ExecuTorchEngine: Engine {
    let runtime = "executorch"
    private var runner: TextRunner?
    private var contextLength = 512

    var detail: String { "ExecuTorch TextRunner (XNNPACK delegate, CPU)" }

    func load(bundle: SLMBundle, artifact: Artifact) async throws {
        if case .int(let n)? = artifact.metadata["get_max_context_len"] { contextLength = n }
        let r = TextRunner(modelPath: artifact.loadPath.path, tokenizerPath: artifact.tokenizer.path)
        do {
            try r.load()
        } catch {
            throw BundleError("ExecuTorch could not load \(artifact.name): \(error.localizedDescription)",
                              fix: "use an app built with ExecuTorch \(artifact.runtimeVersion ?? "as new as the exporter's") or newer, or re-export")
        }
        runner = r
    }

    func generate(prompt: String, settings: GenerationSettings, onText: @escaping (String) -> Void) throws -> GenerationStats {
        guard let runner = runner else { throw BundleError("no model loaded", fix: "open a bundle first") }
        runner.reset()  // every reply is generated from the whole rendered conversation
        let filter = settings.stopFilter()
        let t0 = DispatchTime.now().uptimeNanoseconds
        var tFirst: UInt64?
        var tokens = 0
        let config = Config {
            $0.sequenceLength = self.contextLength
            $0.maximumNewTokens = settings.maxNewTokens ?? 64
            $0.temperature = settings.temperature ?? 0
            $0.bosCount = settings.addBos ? 1 : 0
        }
        try runner.generate(prompt, config) { piece in
            tokens += 1
            let visible = filter.push(piece)
            if !visible.isEmpty {
                if tFirst == nil { tFirst = DispatchTime.now().uptimeNanoseconds }
                onText(visible)
            }
            if filter.stopped { runner.stop() }
        }
        let tail = filter.finish()
        if !tail.isEmpty { onText(tail) }
        let tEnd = DispatchTime.now().uptimeNanoseconds
        let first = tFirst ?? tEnd
        let decodeS = Double(tEnd - first) / 1e9
        return GenerationStats(ttftMs: Double(first - t0) / 1e6,
                               decodeTokPerS: tokens > 1 && decodeS > 0 ? Double(tokens - 1) / decodeS : 0, tokens: tokens)
    }

    func stop() { runner?.stop() }

    func close() { runner = nil }
}
