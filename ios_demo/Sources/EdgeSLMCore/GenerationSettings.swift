import Foundation

/// What one runtime applies of the bundle's generation defaults (manifest `app.generation`, filtered by
/// `app.honoured[runtime]`), plus how a prompt starts and where generation stops (`app.prompt`, `app.stop`).
/// Values a runtime does not honour are kept in `ignored` so the app can say so instead of pretending.
public struct GenerationSettings: Sendable {
    public let runtime: String
    /// The defaults this runtime honours, by manifest name (do_sample, temperature, top_p, top_k, ...).
    public var values: [String: JSONValue]
    /// The defaults this runtime cannot apply.
    public let ignored: [String: JSONValue]
    /// Generation ends at any of these token ids.
    public let eosIds: [Int]
    /// Text a runtime may hand back for an EOS token: stripped from what the user sees.
    public let stopStrings: [String]
    /// Whether a raw (non-chat) prompt starts with BOS (ExecuTorch: bosCount = 1 exactly when true).
    public let addBos: Bool
    public let bosId: Int?
    public let bos: String?

    public var doSample: Bool? { values["do_sample"]?.bool }
    public var temperature: Double? { values["temperature"]?.number }
    public var topP: Double? { values["top_p"]?.number }
    public var topK: Int? { values["top_k"]?.number.map { Int($0) } }
    public var repetitionPenalty: Double? { values["repetition_penalty"]?.number }
    public var maxNewTokens: Int? { values["max_new_tokens"]?.number.map { Int($0) } }

    init(app: AppJSON, runtime: String) throws {
        guard let honoured = app.honoured[runtime] else {
            throw BundleError("manifest.json: app.honoured has no entry for runtime \"\(runtime)\"", fix: reexport)
        }
        var values: [String: JSONValue] = [:]
        var ignored: [String: JSONValue] = [:]
        for (k, v) in app.generation where v != .null {
            if honoured.contains(k) { values[k] = v } else { ignored[k] = v }
        }
        self.runtime = runtime
        self.values = values
        self.ignored = ignored
        self.eosIds = app.stop.eos_ids
        self.stopStrings = app.stop.strings.filter { !$0.isEmpty }
        self.addBos = app.prompt.add_bos
        self.bosId = app.prompt.bos_id
        self.bos = app.prompt.bos
    }

    /// Settings written by hand (tests, a UI override).
    public init(runtime: String, values: [String: JSONValue], ignored: [String: JSONValue] = [:], eosIds: [Int],
                stopStrings: [String], addBos: Bool, bosId: Int? = nil, bos: String? = nil) {
        self.runtime = runtime
        self.values = values
        self.ignored = ignored
        self.eosIds = eosIds
        self.stopStrings = stopStrings.filter { !$0.isEmpty }
        self.addBos = addBos
        self.bosId = bosId
        self.bos = bos
    }

    /// The same settings with greedy decoding (the golden greedy check, a "deterministic" toggle in the UI).
    public func greedy() -> GenerationSettings {
        var s = self
        s.values["do_sample"] = .bool(false)
        s.values["temperature"] = .double(0)
        return s
    }

    /// A fresh filter for one streamed reply.
    public func stopFilter() -> StopStringFilter { StopStringFilter(stopStrings) }
}

/// Strips stop strings from streamed text: `push` returns what is safe to show now, holding back a tail that could
/// be the start of a stop string; once a stop string appears everything from it on is dropped and `stopped` is true.
/// `finish` returns the held-back tail (when no stop string completed). Works on Unicode scalars, so it never
/// splits a character's code point.
public final class StopStringFilter {
    private let stops: [[Unicode.Scalar]]
    private var held: [Unicode.Scalar] = []
    public private(set) var stopped = false

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    private static func str(_ u: ArraySlice<Unicode.Scalar>) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: u)
        return String(v)
    }

    private static func find(_ needle: [Unicode.Scalar], in hay: [Unicode.Scalar]) -> Int? {
        if needle.count > hay.count { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if Array(hay[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }

    public func push(_ text: String) -> String {
        if stopped { return "" }
        held.append(contentsOf: text.unicodeScalars)
        let s = held
        if let hit = stops.compactMap({ StopStringFilter.find($0, in: s) }).min() {
            stopped = true
            held = []
            return StopStringFilter.str(s[0..<hit])
        }
        // keep the longest suffix of s that is a proper prefix of some stop string
        var keep = 0
        for st in stops {
            var n = min(st.count - 1, s.count)
            while n > keep {
                if Array(s[(s.count - n)...]) == Array(st[0..<n]) { keep = n; break }
                n -= 1
            }
        }
        let cut = s.count - keep
        held = Array(s[cut...])
        return StopStringFilter.str(s[0..<cut])
    }

    public func finish() -> String {
        if stopped { return "" }
        let s = held
        held = []
        return StopStringFilter.str(s[...])
    }

    /// `text` cut at the first stop string (whole-text form of the filter).
    public static func strip(_ text: String, _ stops: [String]) -> String {
        let f = StopStringFilter(stops)
        return f.push(text) + f.finish()
    }
}
