import Foundation
import XCTest
@testable import EdgeSLMCore

/// The rendering rule of docs/apps.md on hand-written templates (the bundle's own is checked in GoldenVectorsTests).
final class ChatTemplateTests: XCTestCase {
    // the example of docs/apps.md (Phi-3 style, BOS in begin and system.prefix)
    private let phi: [String: Any] = [
        "kind": "simple", "reason": NSNull(), "jinja": "{% for message in messages %}...", "begin": "<s>",
        "system": ["supported": true, "prefix": "<s><|system|>\n", "suffix": "<|end|>\n"],
        "user": ["prefix": "<|user|>\n", "suffix": "<|end|>\n"],
        "assistant": ["prefix": "<|assistant|>\n", "suffix": "<|end|>\n"],
        "generation_prompt": "<|assistant|>\n",
        "future_field": 1,
    ]

    private func template(_ edits: [String: Any?] = [:]) throws -> ChatTemplate {
        var d = phi
        for (k, v) in edits { d[k] = v }
        return try ChatTemplate(json: JSONSerialization.data(withJSONObject: d.compactMapValues { $0 }))
    }

    func testRendersTheDocumentedRule() throws {
        let t = try template()
        XCTAssertEqual("<s><|user|>\nHi<|end|>\n<|assistant|>\n", try t.render([Message("user", "Hi")], addGenerationPrompt: true))
        XCTAssertEqual("<s><|user|>\nHi<|end|>\n", try t.render([Message("user", "Hi")], addGenerationPrompt: false))
        XCTAssertEqual("<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|user|>\nAnd?<|end|>\n<|assistant|>\n",
                       try t.render([Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                                     Message("user", "And?")], addGenerationPrompt: true))
    }

    func testEndIsAppendedWhenNoReplyIsWanted() throws {
        let t = try template(["end": "<|endoftext|>"])
        XCTAssertEqual("<s><|user|>\nHi<|end|>\n<|endoftext|>", try t.render([Message("user", "Hi")], addGenerationPrompt: false))
        XCTAssertEqual("<s><|user|>\nHi<|end|>\n<|assistant|>\n", try t.render([Message("user", "Hi")], addGenerationPrompt: true))
    }

    func testTrimContentStripsLikePython() throws {
        let t = try template(["trim_content": true])
        XCTAssertEqual("<s><|user|>\nspaced out<|end|>\n<|assistant|>\n", try t.render([Message("user", "  spaced out \n")], addGenerationPrompt: true))
        XCTAssertEqual("<s><|user|>\n  x <|end|>\n", try template().render([Message("user", "  x ")], addGenerationPrompt: false))
        // Python's str.strip() set: " \t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
        XCTAssertEqual("a b", pythonStrip("\u{85}\u{a0}\u{3000}\u{2009}\u{1f} a b\u{2028}\u{0b}"))
        XCTAssertEqual("\u{200b}x\u{200b}", pythonStrip(" \u{200b}x\u{200b} "))   // zero-width space is not whitespace in Python
        XCTAssertEqual("", pythonStrip(" \t "))
        XCTAssertEqual("e\u{301}", pythonStrip(" e\u{301} "))  // by code point: a combining mark stays
    }

    func testSystemMessageRefusedWhenUnsupported() throws {
        let t = try template(["system": ["supported": false]])
        XCTAssertEqual("<s><|user|>\nHi<|end|>\n", try t.render([Message("user", "Hi")], addGenerationPrompt: false))
        let e = refused { _ = try t.render([Message("system", "x"), Message("user", "Hi")], addGenerationPrompt: true) }
        XCTAssertTrue(e.problem.contains("system"), e.problem)
    }

    func testSystemMessageOnlyFirst() throws {
        let t = try template()
        _ = refused { _ = try t.render([Message("user", "Hi"), Message("system", "x")], addGenerationPrompt: true) }
        _ = refused { _ = try t.render([Message("tool", "x")], addGenerationPrompt: true) }
        _ = refused { _ = try t.render([], addGenerationPrompt: true) }
    }

    func testKindNoneRefusesWithTheReason() throws {
        // the exporter writes only kind, reason and jinja for "none"
        let t = try ChatTemplate(json: JSONSerialization.data(withJSONObject:
            ["kind": "none", "reason": "the model has no chat template", "jinja": NSNull()]))
        let e = refused { _ = try t.render([Message("user", "Hi")], addGenerationPrompt: true) }
        XCTAssertTrue(e.problem.contains("the model has no chat template"), e.problem)
    }

    func testUnknownKindAndMissingPiecesAreRefused() throws {
        _ = refused { _ = try self.template(["kind": "jinja-only"]) }
        _ = refused { _ = try self.template(["user": nil]) }
        _ = refused { _ = try self.template(["generation_prompt": NSNull()]) }
    }
}
