import Foundation

/// Timing of one generate() call, as the app shows it.
public struct GenerationStats: Sendable, Equatable {
    /// Time to first token: from the call to the first text handed to onText, in milliseconds.
    public let ttftMs: Double
    /// Generated tokens per second after the first one.
    public let decodeTokPerS: Double
    /// Tokens generated (EOS excluded).
    public let tokens: Int
    /// The generated token ids, where the runtime hands them back (Core ML); empty otherwise.
    public let tokenIds: [Int]

    public init(ttftMs: Double, decodeTokPerS: Double, tokens: Int, tokenIds: [Int] = []) {
        self.ttftMs = ttftMs
        self.decodeTokPerS = decodeTokPerS
        self.tokens = tokens
        self.tokenIds = tokenIds
    }
}

/// What an app-side runtime wrapper implements (Core ML, ExecuTorch's TextRunner). The app picks the artifact with
/// `SLMBundle.choose(available:)`, checks it with `verify`, then loads it into the engine whose `runtime` matches.
public protocol Engine: AnyObject {
    /// The `load.runtime` value this engine runs: executorch | onnxruntime-genai | coreml.
    var runtime: String { get }
    /// What runs where, for the screen (e.g. "Core ML, compute units: all (CPU, GPU, Neural Engine)").
    var detail: String { get }
    /// Loads `artifact` of `bundle` (artifact.loadPath, artifact.tokenizer). Throws BundleError on failure.
    func load(bundle: SLMBundle, artifact: Artifact) async throws
    /// Generates from an already rendered prompt (see ChatTemplate.render); blocking, call off the main thread.
    /// `onText` receives complete characters only, stop strings removed.
    func generate(prompt: String, settings: GenerationSettings, onText: @escaping (String) -> Void) throws -> GenerationStats
    /// Stops a generate() running on another thread, if the runtime can.
    func stop()
    func close()
}

/// Token choice from one row of logits, per the settings a runtime honours: greedy (argmax) when do_sample is
/// false or the temperature is 0, else softmax(logits / temperature) restricted by top_k and top_p.
public enum Sampler {
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    public static func pick<G: RandomNumberGenerator>(_ logits: [Float], settings: GenerationSettings, using rng: inout G) -> Int {
        let t = settings.temperature ?? 1.0
        if settings.doSample == false || t <= 0 || logits.count < 2 { return argmax(logits) }
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] }
        if let k = settings.topK, k > 0, k < order.count { order = Array(order[0..<k]) }
        let maxL = Double(logits[order[0]])
        var probs = order.map { exp((Double(logits[$0]) - maxL) / t) }
        let total = probs.reduce(0, +)
        probs = probs.map { $0 / total }
        if let p = settings.topP, p < 1.0 {
            var cum = 0.0
            var n = 0
            while n < probs.count { cum += probs[n]; n += 1; if cum >= p { break } }
            order = Array(order[0..<n])
            let s = probs[0..<n].reduce(0, +)
            probs = probs[0..<n].map { $0 / s }
        }
        var r = Double.random(in: 0..<1, using: &rng)
        for (i, p) in probs.enumerated() {
            r -= p
            if r < 0 { return order[i] }
        }
        return order[order.count - 1]
    }
}
