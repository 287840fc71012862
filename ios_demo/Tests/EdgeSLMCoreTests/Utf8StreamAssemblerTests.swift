import XCTest
@testable import EdgeSLMCore

/// Multi-byte characters split across tokens, built by hand.
final class Utf8StreamAssemblerTests: XCTestCase {
    private func stream(_ tokens: [UInt8]...) -> [String] { streamList(tokens) }

    private func streamList(_ tokens: [[UInt8]]) -> [String] {
        let a = Utf8StreamAssembler()
        return tokens.map { a.push($0) } + [a.finish()]
    }

    func testTwoByteCharacterSplitOneAndOne() {
        // "café": c a f C3 | A9
        XCTAssertEqual(["caf", "", "é", "", ""], stream(Array("caf".utf8), [0xC3], [0xA9], []))
        XCTAssertEqual(["", "é", ""], stream([0xC3], [0xA9]))
    }

    func testFourByteEmojiSplitOneAndThree() {
        // 🙂 U+1F642 = F0 9F 99 82
        XCTAssertEqual(["", "🙂", ""], stream([0xF0], [0x9F, 0x99, 0x82]))
        XCTAssertEqual(["x", "🙂y", ""], stream([0x78, 0xF0, 0x9F], [0x99, 0x82, 0x79]))
        XCTAssertEqual(["", "", "", "🙂", ""], stream([0xF0], [0x9F], [0x99], [0x82]))
    }

    func testThreeByteCharacterSplitTwoAndOne() {
        // 中 = E4 B8 AD
        XCTAssertEqual(["a", "中文", ""], stream([0x61, 0xE4, 0xB8], [0xAD, 0xE6, 0x96, 0x87]))
    }

    func testEmojiIsNeverHalfEmitted() {
        let text = "ok 🙂🙃 中文 é"
        let bytes = Array(text.utf8)
        for cut in 0...bytes.count {
            let out = stream(Array(bytes[0..<cut]), Array(bytes[cut...]))
            XCTAssertEqual(text, out.joined(), "cut at \(cut)")
            for o in out { XCTAssertFalse(o.unicodeScalars.contains("\u{FFFD}"), "cut \(cut): replacement char in \(o)") }
        }
    }

    func testByteByByteEqualsWholeDecode() {
        let text = "Grüße, мир, 世界, 👩‍💻!"
        let a = Utf8StreamAssembler()
        var out = ""
        for b in text.utf8 { out += a.push([b]) }
        out += a.finish()
        XCTAssertEqual(text, out)
    }

    func testInvalidBytesBecomeReplacementCharacters() {
        // a lone continuation byte is invalid at once; a lead byte followed by ASCII is invalid when the ASCII arrives
        XCTAssertEqual(["\u{FFFD}a", "", "\u{FFFD}b", ""], stream([0x80, 0x61], [0xC3], [0x62]))
        // an incomplete sequence at the end is flushed by finish() as one U+FFFD (as Python's decoder does)
        XCTAssertEqual(["x", "\u{FFFD}"], stream([0x78, 0xF0, 0x9F, 0x99]))
        // UTF-16 surrogates encoded in UTF-8 are invalid
        XCTAssertEqual("\u{FFFD}\u{FFFD}\u{FFFD}", stream([0xED, 0xA0, 0x80]).joined())
    }

    func testReplacementMatchesPythonsIncrementalDecoder() {
        // expected values: codecs.getincrementaldecoder("utf-8")("replace"), whole input then final=True
        let r = "\u{FFFD}"
        let cases: [String: String] = [
            "eda080": String(repeating: r, count: 3), "8061c362": "\(r)a\(r)b", "f09f99": r,
            "e080af": String(repeating: r, count: 3), "f4908080": String(repeating: r, count: 4),
            "c0af": String(repeating: r, count: 2), "e180e2f09192f1bf41": String(repeating: r, count: 4) + "A",
            "f888808080": String(repeating: r, count: 5),
        ]
        for (hex, want) in cases {
            let chars = Array(hex)
            let bytes = stride(from: 0, to: chars.count, by: 2).map { UInt8(String(chars[$0..<$0 + 2]), radix: 16)! }
            XCTAssertEqual(want, stream(bytes).joined(), "\(hex) whole")
            XCTAssertEqual(want, streamList(bytes.map { [$0] }).joined(), "\(hex) byte by byte")
        }
    }

    func testFinishResetsForTheNextReply() {
        let a = Utf8StreamAssembler()
        _ = a.push([0xC3])
        XCTAssertEqual("\u{FFFD}", a.finish())
        XCTAssertEqual("é", a.push([0xC3, 0xA9]))
        XCTAssertEqual("", a.finish())
    }
}
