/// Turns the raw bytes of streamed tokens into text without ever emitting half a character: `push` returns only
/// the complete UTF-8 characters so far and holds back an incomplete trailing sequence (a character split across
/// two tokens is emitted once, whole, with the token that completes it); `finish` flushes what is left at the end
/// and makes the assembler ready for the next reply.
///
/// Invalid bytes become U+FFFD, one per maximal subpart (Unicode §3.9), exactly as Python's
/// `codecs.getincrementaldecoder("utf-8")(errors="replace")` that wrote golden.json does. Written out by hand (the
/// same state machine as android_demo's Kotlin assembler) rather than with String(decoding:), which cannot hold
/// back an incomplete tail.
public final class Utf8StreamAssembler {
    private var cp: UInt32 = 0      // code point being assembled
    private var need = 0            // continuation bytes still needed (0: between characters)
    private var lo: UInt8 = 0x80    // allowed range of the next continuation byte
    private var hi: UInt8 = 0xBF
    private static let replacement: Unicode.Scalar = "\u{FFFD}"

    public init() {}

    public func push<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out = String.UnicodeScalarView()
        for b in bytes { feed(b, &out) }
        return String(out)
    }

    public func finish() -> String {
        let out = need > 0 ? String(Utf8StreamAssembler.replacement) : ""
        need = 0
        return out
    }

    private func feed(_ b: UInt8, _ out: inout String.UnicodeScalarView) {
        if need > 0 {
            if b >= lo && b <= hi {
                cp = (cp << 6) | UInt32(b & 0x3F)
                need -= 1
                lo = 0x80; hi = 0xBF
                if need == 0 { out.append(Unicode.Scalar(cp) ?? Utf8StreamAssembler.replacement) }
                return
            }
            out.append(Utf8StreamAssembler.replacement)  // the incomplete sequence so far is one maximal subpart
            need = 0
        }
        switch b {
        case 0x00...0x7F: out.append(Unicode.Scalar(b))
        case 0xC2...0xDF: start(b & 0x1F, 1, 0x80, 0xBF)
        case 0xE0: start(b & 0x0F, 2, 0xA0, 0xBF)
        case 0xE1...0xEC, 0xEE, 0xEF: start(b & 0x0F, 2, 0x80, 0xBF)
        case 0xED: start(b & 0x0F, 2, 0x80, 0x9F)          // no UTF-16 surrogates
        case 0xF0: start(b & 0x07, 3, 0x90, 0xBF)
        case 0xF1...0xF3: start(b & 0x07, 3, 0x80, 0xBF)
        case 0xF4: start(b & 0x07, 3, 0x80, 0x8F)          // nothing above U+10FFFF
        default: out.append(Utf8StreamAssembler.replacement) // 80..C1, F5..FF: never valid as a first byte
        }
    }

    private func start(_ bits: UInt8, _ n: Int, _ low: UInt8, _ high: UInt8) {
        cp = UInt32(bits); need = n; lo = low; hi = high
    }
}
