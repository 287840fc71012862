import Foundation
import XCTest
@testable import EdgeSLMCore

/// The bundle's golden.json, checked from the app side: the same file the exporter checked against transformers.
final class GoldenVectorsTests: XCTestCase {
    private var bundle: SLMBundle!
    private var golden: [String: Any]!

    override func setUpWithError() throws {
        bundle = try TestBundles.open()
        golden = try bundle.readGolden()
    }

    private var tokenizer: [String: Any] { golden["tokenizer"] as! [String: Any] }

    func testBundleOpensAndEveryArtifactVerifies() throws {
        XCTAssertEqual("edgeslm-golden", golden["kind"] as? String)
        XCTAssertFalse(bundle.artifacts.isEmpty)
        for a in bundle.artifacts {
            try bundle.verify(a)
            XCTAssertTrue(FileManager.default.fileExists(atPath: a.loadPath.path), "\(a.name): load.path exists")
            XCTAssertTrue(FileManager.default.fileExists(atPath: a.tokenizer.path), "\(a.name): tokenizer exists")
            XCTAssertTrue(["executorch", "onnxruntime-genai", "coreml"].contains(a.runtime), "\(a.name): runtime \(a.runtime)")
            XCTAssertTrue(["passed", "failed", "runtime_not_run"].contains(a.parity), "\(a.name): parity \(a.parity)")
            if a.runtime == "coreml" {
                // what CoreMLEngine feeds and reads, by the names the bundle records
                XCTAssertEqual(["tokens", "input_pos"], a.inputNames)
                XCTAssertEqual(["logits"], a.outputNames)
                XCTAssertTrue(a.name.hasSuffix(".mlpackage"))
            }
        }
    }

    func testChatRenderingEqualsEveryGoldenPrompt() throws {
        let chat = try bundle.chatTemplate()
        let cases = objects(golden["chat"])
        if chat.kind == ChatTemplate.none {
            XCTAssertTrue(cases.isEmpty, "kind none but golden.json has chat prompts")
            let e = refused { _ = try chat.render([Message("user", "Hi")], addGenerationPrompt: true) }
            XCTAssertTrue(e.problem.contains(chat.reason!), e.problem)
            return
        }
        XCTAssertFalse(cases.isEmpty, "golden.json has no chat cases for a simple template")
        for (i, c) in cases.enumerated() {
            let msgs = objects(c["messages"]).map { Message($0["role"] as! String, $0["content"] as! String) }
            XCTAssertEqual(c["prompt"] as? String,
                           try chat.render(msgs, addGenerationPrompt: c["add_generation_prompt"] as! Bool), "chat[\(i)]")
        }
    }

    /// The stream vectors; empty only for a tokenizer whose decoder is neither byte-level nor byte-fallback, which
    /// golden.json then says in `stream_note`.
    private func streams() -> [[String: Any]] {
        let s = objects(tokenizer["stream"])
        if s.isEmpty { XCTAssertFalse(((tokenizer["stream_note"] as? String) ?? "").isEmpty, "no stream vectors and no stream_note") }
        return s
    }

    func testGreedyVectorsCoverEveryArtifact() throws {
        let greedy = objects(golden["greedy"])
        for a in bundle.artifacts {
            let g = greedy.filter { ($0["artifact"] as? String) == a.name }
            XCTAssertEqual(1, g.count, "greedy entries for \(a.name) (\(a.runtime))")
            guard let e = g.first else { continue }
            XCTAssertEqual(a.runtime, e["runtime"] as? String)
            let mustMatch = (e["must_match"] as! NSNumber).intValue
            if let tokens = e["tokens"] as? [Any] {
                XCTAssertFalse(tokens.isEmpty, "\(a.name): no greedy tokens")
                XCTAssertTrue((0...tokens.count).contains(mustMatch), "\(a.name): must_match \(mustMatch) of \(tokens.count)")
                XCTAssertEqual(try bundle.settings(for: a).addBos, e["add_bos"] as? Bool)
            } else {
                // Core ML on Linux: the runtime could not run at export
                XCTAssertEqual(0, mustMatch)
                XCTAssertFalse(((e["reason"] as? String) ?? "").isEmpty)
            }
        }
    }

    func testAssemblerEmitsExactlyTheGoldenChunks() throws {
        for (i, s) in streams().enumerated() {
            let tb = (s["token_bytes"] as! [Any]).map { byteArray($0) }
            let chunks = s["chunks"] as! [String]
            XCTAssertEqual(tb.count, chunks.count, "stream[\(i)]: one chunk per token")
            let asm = Utf8StreamAssembler()
            var got = tb.map { asm.push($0) }
            // the exporter appends the final flush (U+FFFD for an incomplete tail) to the last token's chunk
            if !got.isEmpty { got[got.count - 1] += asm.finish() }
            XCTAssertEqual(chunks, got, "stream[\(i)] chunks")
            XCTAssertEqual(s["text"] as? String, got.joined(), "stream[\(i)] text")
        }
    }

    func testTokenBytesFromTokenizerJsonEqualGoldenTokenBytes() throws {
        let a = bundle.artifacts[0]
        let tb = try TokenBytes(tokenizerJSON: a.tokenizer)
        for (i, s) in streams().enumerated() {
            let ids = (s["ids"] as! [NSNumber]).map(\.intValue)
            let bytes = (s["token_bytes"] as! [Any]).map { byteArray($0) }
            for (k, id) in ids.enumerated() { XCTAssertEqual(bytes[k], try tb.bytes(of: id), "stream[\(i)] token \(k) (id \(id))") }
        }
    }

    func testGoldenSplitCharacterIsEmittedOnceWhole() throws {
        var splits = 0
        let all = streams()
        for s in all {
            let asm = Utf8StreamAssembler()
            for b in (s["token_bytes"] as! [Any]).map({ byteArray($0) }) {
                let out = asm.push(b)
                XCTAssertFalse(out.unicodeScalars.contains("\u{FFFD}"), "half a character emitted: \(out)")
                // a token that ends inside a character emits nothing of it; the next one emits it whole
                if !b.isEmpty && out.isEmpty { splits += 1 }
            }
            _ = asm.finish()
        }
        let note = (tokenizer["stream_note"] as? String) ?? ""
        if !all.isEmpty && !note.hasPrefix("no character") {
            XCTAssertGreaterThan(splits, 0, "golden.json has no character split across tokens (\(note))")
        }
    }
}
