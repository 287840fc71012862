import CoreML
import EdgeSLMCore
import Foundation
import Tokenizers

/// The bundle's stateful .mlpackage in Core ML: compiled on the device (`MLModel.compileModel(at:)`), loaded with
/// the chosen compute units, the KV cache kept in an `MLState` (`makeState()`, `prediction(from:using:)`; iOS 18 /
/// macOS 15, the first with Core ML states). `tokens` [1, L] and `input_pos` [L] (int32) are fed by the names the
/// manifest records; the last row of `logits` picks the next token, with the settings Core ML honours
/// (temperature, max_new_tokens). Tokenizer: swift-transformers' Tokenizers on the bundle's tokenizer.json for
/// encoding; each generated id's bytes (EdgeSLMCore.TokenBytes) stream through the UTF-8 assembler.
@available(iOS 18.0, macOS 15.0, *)
final class CoreMLEngine: Engine {
    let runtime = "coreml"
    let computeUnits: MLComputeUnits
    private var model: MLModel?
    private var tokenizer: (any Tokenizer)?
    private var tokenBytes: TokenBytes?
    private var tokensName = "tokens"
    private var positionsName = "input_pos"
    private var logitsName = "logits"
    private var contextLength = 512
    /// Tokens per prediction of a fixed-shape package (edgeslm's Neural Engine form takes 1); nil: any 1..context.
    private var tokensPerCall: Int?
    private let lock = NSLock()
    private var stopRequested = false

    init(computeUnits: MLComputeUnits = .all) {
        self.computeUnits = computeUnits
    }

    var detail: String { "Core ML, compute units: \(CoreMLEngine.describe(computeUnits))" }

    static func describe(_ u: MLComputeUnits) -> String {
        switch u {
        case .cpuOnly: return "CPU only"
        case .cpuAndGPU: return "CPU and GPU"
        case .cpuAndNeuralEngine: return "CPU and Neural Engine"
        case .all: return "all (CPU, GPU, Neural Engine)"
        @unknown default: return "unknown (\(u.rawValue))"
        }
    }

    func load(bundle: SLMBundle, artifact: Artifact) async throws {
        let compiled: URL
        do {
            compiled = try await MLModel.compileModel(at: artifact.loadPath)
        } catch {
            throw BundleError("Core ML could not compile \(artifact.name): \(error.localizedDescription)",
                              fix: "export again with `edgeslm export --target ios`; Core ML states need iOS 18 / macOS 15")
        }
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        let m = try MLModel(contentsOf: compiled, configuration: config)
        if artifact.inputNames.count >= 2 {
            tokensName = artifact.inputNames[0]
            positionsName = artifact.inputNames[1]
        }
        if let out = artifact.outputNames.first { logitsName = out }
        let inputs = m.modelDescription.inputDescriptionsByName
        for name in [tokensName, positionsName] where inputs[name] == nil {
            throw BundleError("\(artifact.name) has no input \"\(name)\" (it has \(inputs.keys.sorted().joined(separator: ", ")))",
                              fix: "re-export the bundle with `edgeslm export --target ios`")
        }
        if m.modelDescription.outputDescriptionsByName[logitsName] == nil {
            throw BundleError("\(artifact.name) has no output \"\(logitsName)\"", fix: "re-export the bundle with `edgeslm export --target ios`")
        }
        if let ctx = artifact.metadata["edgeslm.context_length"]?.string.flatMap({ Int($0) }) { contextLength = ctx }
        if let c = inputs[tokensName]?.multiArrayConstraint, c.shapeConstraint.type == .unspecified, c.shape.count == 2 {
            tokensPerCall = c.shape[1].intValue  // fixed shape: the prompt goes in that many tokens at a time
        }
        // AutoTokenizer reads tokenizer.json and tokenizer_config.json from the folder that holds them
        tokenizer = try await AutoTokenizer.from(modelFolder: artifact.tokenizer.deletingLastPathComponent())
        tokenBytes = try TokenBytes(tokenizerJSON: artifact.tokenizer)
        model = m
    }

    /// The prompt's token ids: no special tokens added (BOS, if any, is in the chat template's pieces), BOS first for
    /// a bundle whose raw prompts start with it (`app.prompt.add_bos`).
    func encode(_ prompt: String, settings: GenerationSettings) throws -> [Int] {
        guard let tok = tokenizer else { throw BundleError("no model loaded", fix: "open a bundle first") }
        var ids = tok.encode(text: prompt, addSpecialTokens: false)
        if settings.addBos, let bos = settings.bosId, ids.first != bos { ids.insert(bos, at: 0) }
        return ids
    }

    /// One forward pass: `tokens` at positions start..<start+count; returns the last row of `logits`.
    func step(_ tokens: [Int], start: Int, state: MLState) throws -> [Float] {
        guard let model = model else { throw BundleError("no model loaded", fix: "open a bundle first") }
        let t = try MLMultiArray(shape: [1, NSNumber(value: tokens.count)], dataType: .int32)
        let p = try MLMultiArray(shape: [NSNumber(value: tokens.count)], dataType: .int32)
        for (i, v) in tokens.enumerated() {
            t[[0, NSNumber(value: i)]] = NSNumber(value: v)
            p[i] = NSNumber(value: start + i)
        }
        let input = try MLDictionaryFeatureProvider(dictionary: [
            tokensName: MLFeatureValue(multiArray: t),
            positionsName: MLFeatureValue(multiArray: p),
        ])
        let out = try model.prediction(from: input, using: state)
        guard let logits = out.featureValue(for: logitsName)?.multiArrayValue else {
            throw BundleError("Core ML returned no \"\(logitsName)\"", fix: "re-export the bundle with `edgeslm export --target ios`")
        }
        return CoreMLEngine.lastRow(logits)
    }

    /// The prompt in one prediction, or in pieces of `tokensPerCall` for a fixed-shape (Neural Engine) package.
    func prefill(_ ids: [Int], state: MLState) throws -> [Float] {
        guard let n = tokensPerCall, n > 0 else { return try step(ids, start: 0, state: state) }
        if ids.count % n != 0 {
            throw BundleError("this package takes \(n) tokens per prediction; the prompt has \(ids.count)",
                              fix: "export with tokens_per_call 1 (the ios-ane target does)")
        }
        var logits: [Float] = []
        for start in stride(from: 0, to: ids.count, by: n) {
            logits = try step(Array(ids[start..<start + n]), start: start, state: state)
        }
        return logits
    }

    /// The last row of a [.., vocab] logits array ([1, vocab] as edgeslm exports it, or [1, L, vocab]).
    static func lastRow(_ a: MLMultiArray) -> [Float] {
        let shape = a.shape.map(\.intValue)
        let strides = a.strides.map(\.intValue)
        let vocab = shape[shape.count - 1]
        let step = strides[strides.count - 1]
        var offset = 0
        for d in 0..<(shape.count - 1) { offset += (shape[d] - 1) * strides[d] }
        var row = [Float](repeating: 0, count: vocab)
        if a.dataType == .float32 {
            a.withUnsafeBufferPointer(ofType: Float.self) { buf in
                for i in 0..<vocab { row[i] = buf[offset + i * step] }
            }
        } else {
            let lead = shape.dropLast().map { NSNumber(value: $0 - 1) }
            for i in 0..<vocab { row[i] = a[lead + [NSNumber(value: i)]].floatValue }
        }
        return row
    }

    /// Ids in, ids out (what the golden greedy test checks): prefill the prompt, then one token at a time until EOS,
    /// max_new_tokens or the context is full. A fresh MLState per call: each reply starts from position 0.
    func generateIds(_ promptIds: [Int], settings: GenerationSettings, onToken: (Int) -> Void = { _ in }) throws -> [Int] {
        guard let model = model else { throw BundleError("no model loaded", fix: "open a bundle first") }
        if promptIds.isEmpty { throw BundleError("the prompt has no tokens", fix: "type something") }
        if promptIds.count >= contextLength {
            throw BundleError("the prompt has \(promptIds.count) tokens; this model's context is \(contextLength)",
                              fix: "start a new chat or shorten the message")
        }
        lock.withLock { stopRequested = false }
        let state = model.makeState()
        var rng = SystemRandomNumberGenerator()
        var logits = try prefill(promptIds, state: state)
        var pos = promptIds.count
        var out: [Int] = []
        let maxNew = settings.maxNewTokens ?? 64
        while out.count < maxNew && pos < contextLength && !lock.withLock({ stopRequested }) {
            let next = Sampler.pick(logits, settings: settings, using: &rng)
            if settings.eosIds.contains(next) { break }
            out.append(next)
            onToken(next)
            if out.count == maxNew || pos + 1 >= contextLength { break }
            logits = try step([next], start: pos, state: state)
            pos += 1
        }
        return out
    }

    func generate(prompt: String, settings: GenerationSettings, onText: @escaping (String) -> Void) throws -> GenerationStats {
        guard let bytes = tokenBytes else { throw BundleError("no model loaded", fix: "open a bundle first") }
        let t0 = DispatchTime.now().uptimeNanoseconds
        var tFirst: UInt64?
        let asm = Utf8StreamAssembler()
        let filter = settings.stopFilter()
        func show(_ s: String) {
            let visible = filter.push(s)
            if !visible.isEmpty {
                if tFirst == nil { tFirst = DispatchTime.now().uptimeNanoseconds }
                onText(visible)
            }
        }
        let ids = try generateIds(try encode(prompt, settings: settings), settings: settings) { id in
            if bytes.special.contains(id) { return }
            if let b = try? bytes.bytes(of: id) { show(asm.push(b)) }
        }
        show(asm.finish())
        let tail = filter.finish()
        if !tail.isEmpty { onText(tail) }
        let tEnd = DispatchTime.now().uptimeNanoseconds
        let first = tFirst ?? tEnd
        let decodeS = Double(tEnd - first) / 1e9
        return GenerationStats(ttftMs: Double(first - t0) / 1e6,
                               decodeTokPerS: ids.count > 1 && decodeS > 0 ? Double(ids.count - 1) / decodeS : 0,
                               tokens: ids.count, tokenIds: ids)
    }

    func stop() { lock.withLock { stopRequested = true } }

    func close() {
        model = nil
        tokenizer = nil
    }
}
