import Foundation

/// Each token id's raw bytes, straight from a tokenizer.json: what a runtime that hands back ids (Core ML) streams
/// through `Utf8StreamAssembler`. Byte-level BPE (GPT-2, Llama 3, Qwen) and byte-fallback SentencePiece (Llama 2,
/// Gemma) are read; special tokens are skipped in `decode` (as transformers' `skip_special_tokens=True`).
/// Encoding is not done here: the app encodes with swift-transformers' Tokenizers.
public final class TokenBytes {
    public let byteLevel: Bool
    private var pieces: [Int: String] = [:]
    public private(set) var special = Set<Int>()

    public init(tokenizerJSON url: URL) throws {
        let bad = { (why: String) in BundleError("\(url.lastPathComponent): \(why)", fix: reexport) }
        guard let tj = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any],
              let model = tj["model"] as? [String: Any] else { throw bad("not a tokenizer.json") }
        guard let vocab = model["vocab"] as? [String: Any] else {
            throw bad("model.vocab is not a token → id map (model type \(model["type"] ?? "?"))")
        }
        for (k, v) in vocab { if let id = (v as? NSNumber)?.intValue { pieces[id] = k } }
        for t in (tj["added_tokens"] as? [[String: Any]]) ?? [] {
            guard let id = (t["id"] as? NSNumber)?.intValue, let content = t["content"] as? String else { continue }
            pieces[id] = content
            if (t["special"] as? Bool) == true { special.insert(id) }
        }
        var types = Set<String>()
        if let dec = tj["decoder"] as? [String: Any] {
            if let t = dec["type"] as? String { types.insert(t) }
            for d in (dec["decoders"] as? [[String: Any]]) ?? [] { if let t = d["type"] as? String { types.insert(t) } }
        }
        byteLevel = types.contains("ByteLevel")
        if !(byteLevel || types.contains("ByteFallback") || types.contains("Metaspace")) {
            throw bad("decoder \(types.sorted().joined(separator: ", ")) is neither byte-level nor byte-fallback")
        }
    }

    public func bytes(of id: Int) throws -> [UInt8] {
        guard let p = pieces[id] else { throw BundleError("token id \(id) is not in the vocabulary", fix: reexport) }
        if byteLevel {
            return try p.unicodeScalars.map { (c: Unicode.Scalar) throws -> UInt8 in
                guard let b = TokenBytes.byteOf[c] else { throw BundleError("token \(id) (\(p)) is not byte-level", fix: reexport) }
                return b
            }
        }
        let u = Array(p.utf8)
        if u.count == 6, p.hasPrefix("<0x"), p.hasSuffix(">"), let b = UInt8(String(p.dropFirst(3).prefix(2)), radix: 16) {
            return [b]
        }
        return Array(p.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
    }

    public func decode(_ ids: [Int]) throws -> String {
        let asm = Utf8StreamAssembler()
        var out = ""
        for id in ids where !special.contains(id) { out += asm.push(try bytes(of: id)) }
        return out + asm.finish()
    }

    /// GPT-2's byte ↔ printable character table, inverted (what byte-level BPE tokens spell).
    static let byteOf: [Unicode.Scalar: UInt8] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0...255 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var m: [Unicode.Scalar: UInt8] = [:]
        for i in cs.indices { m[Unicode.Scalar(UInt32(cs[i]))!] = UInt8(bs[i]) }
        return m
    }()
}
