import Foundation
import XCTest
@testable import EdgeSLMCore

/// What a bundle reader must refuse, on altered copies of the real bundle.
final class BundleSafetyTests: XCTestCase {
    func testTamperedFileIsRefusedNamingIt() throws {
        let b = try SLMBundle.open(try TestBundles.copy())
        let a = b.artifacts[0]
        let target = a.entries[0]
        let h = try FileHandle(forUpdating: target.url)
        let size = try h.seekToEnd()
        try h.seek(toOffset: size / 2)
        let x = try XCTUnwrap(h.read(upToCount: 1))[0]
        try h.seek(toOffset: size / 2)
        try h.write(contentsOf: Data([x ^ 0x01]))
        try h.close()
        assertMentions(refused { try b.verify(a) }, target.path, "modified")
    }

    func testTamperedTokenizerIsRefusedNamingIt() throws {
        let b = try SLMBundle.open(try TestBundles.copy())
        let tok = b.tokenizerFiles[0]
        var bytes = try Data(contentsOf: tok.url)
        bytes[0] ^= 0x20
        try bytes.write(to: tok.url)
        for a in b.artifacts { assertMentions(refused { try b.verify(a) }, tok.path) }
    }

    func testTruncatedFileIsRefusedNamingIt() throws {
        let b = try SLMBundle.open(try TestBundles.copy())
        let a = b.artifacts[b.artifacts.count - 1]
        let target = a.entries[a.entries.count - 1]
        let h = try FileHandle(forUpdating: target.url)
        try h.truncate(atOffset: UInt64(target.bytes - 1))
        try h.close()
        assertMentions(refused { try b.verify(a) }, target.path, "truncated")
    }

    func testMissingFileIsRefusedNamingIt() throws {
        let b = try SLMBundle.open(try TestBundles.copy())
        let a = b.artifacts[0]
        try FileManager.default.removeItem(at: a.entries[0].url)
        assertMentions(refused { try b.verify(a) }, a.entries[0].path, "missing")
    }

    func testTamperedGoldenIsRefused() throws {
        let b = try SLMBundle.open(try TestBundles.copy())
        let g = try XCTUnwrap(b.golden)
        let h = try FileHandle(forWritingTo: g.url)
        try h.seekToEnd()
        try h.write(contentsOf: Data(" ".utf8))
        try h.close()
        assertMentions(refused { _ = try b.readGolden() }, g.path)
    }

    func testDotDotPathIsRefused() throws {
        let d = try mutated([(["artifacts", 0, "file"], "../outside.pte")])
        assertMentions(refused { _ = try SLMBundle.open(d) }, "../outside.pte", "'..'")
        let d2 = try mutated([(["artifacts", 0, "load", "path"], "sub/../../x")])
        assertMentions(refused { _ = try SLMBundle.open(d2) }, "sub/../../x")
        let d3 = try mutated([(["tokenizer", "files", 0, "file"], "..\\tokenizer.json")])
        _ = refused { _ = try SLMBundle.open(d3) }
    }

    func testAbsolutePathIsRefused() throws {
        let d = try mutated([(["artifacts", 0, "load", "tokenizer"], "/etc/passwd")])
        assertMentions(refused { _ = try SLMBundle.open(d) }, "/etc/passwd", "absolute")
        let d2 = try mutated([(["artifacts", 0, "file"], "C:\\model.pte")])
        assertMentions(refused { _ = try SLMBundle.open(d2) }, "absolute")
    }

    func testSymlinkIsRefused() throws {
        let d = try TestBundles.copy()
        let m = try TestBundles.manifest(d)
        let art = objects(m["artifacts"])[0]
        let name = art["file"] as! String
        let f = d.appendingPathComponent(name)
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("edgeslm-outside-\(UUID().uuidString).bin")
        try FileManager.default.copyItem(at: f, to: outside)
        try FileManager.default.removeItem(at: f)
        try FileManager.default.createSymbolicLink(at: f, withDestinationURL: outside)
        assertMentions(refused { _ = try SLMBundle.open(d) }, name, "symlink")
        // a symlink that stays inside the bundle is refused too
        try FileManager.default.removeItem(at: f)
        let inside = d.appendingPathComponent("inside.bin")
        try FileManager.default.copyItem(at: outside, to: inside)
        try FileManager.default.createSymbolicLink(at: f, withDestinationURL: inside)
        assertMentions(refused { _ = try SLMBundle.open(d) }, "symlink")
    }

    func testNotAnEdgeslmManifestIsRefused() throws {
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["kind"], "something-else")])) }, "edgeslm-bundle")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["kind"], nil)])) }, "kind")
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("edgeslm-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        assertMentions(refused { _ = try SLMBundle.open(empty) }, "manifest.json")
    }

    func testOtherSchemaMajorIsRefused() throws {
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["schema_version"], "2.0")])) }, "2.0", "1.x")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["schema_version"], "0.9")])) }, "0.9")
        _ = refused { _ = try SLMBundle.open(try mutated([(["schema_version"], 1.2)])) }
        // a newer 1.x minor is read (1.x readers ignore fields they do not know)
        _ = try SLMBundle.open(try mutated([(["schema_version"], "1.99"), (["future_field"], ["x": 1]),
                                            (["artifacts", 0, "future_field"], [1, 2, 3]),
                                            (["app", "future_field"], "y")]))
    }

    func testMissingRequiredFieldsAreRefused() throws {
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["artifacts", 0, "load"], nil)])) }, "artifacts[0].load")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["artifacts", 0, "load", "runtime"], nil)])) }, "runtime")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["artifacts", 0, "sha256"], nil)])) }, "sha256")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["app"], nil)])) }, "app")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["app", "chat"], nil)])) }, "app.chat")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["status"], nil)])) }, "status")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["artifacts", 0, "parity"], NSNull())])) }, "parity")
        assertMentions(refused { _ = try SLMBundle.open(try mutated([(["artifacts", 0, "sha256"], "ABC")])) }, "sha256")
    }

    func testFailedBundleStatusIsRefusedByChoose() throws {
        let b = try SLMBundle.open(try mutated([(["status"], "failed")]))
        assertMentions(refused { _ = try b.choose(available: Set(b.artifacts.map(\.runtime))) }, "failed")
    }

    /// The bundle with status and every parity "passed" (a random-weight test model may have failed its gates).
    private func passing(_ edits: [([Any], Any?)] = []) throws -> SLMBundle {
        let n = objects(try TestBundles.manifest(try TestBundles.dir)["artifacts"]).count
        let all: [([Any], Any?)] = [(["status"], "passed")] + (0..<n).map { i -> ([Any], Any?) in (["artifacts", i, "parity"], "passed") } + edits
        return try SLMBundle.open(try mutated(all))
    }

    func testFailedArtifactParityIsRefusedByChoose() throws {
        let b = try passing([(["artifacts", 0, "parity"], "failed")])
        let first = b.artifacts[0]
        assertMentions(refused { _ = try b.choose(available: [first.runtime]) }, first.name, "parity")
    }

    func testChooseTakesTheFirstAvailableRuntime() throws {
        let b = try passing()
        for a in b.artifacts {
            XCTAssertEqual(b.artifacts.first { $0.runtime == a.runtime }!.name, try b.choose(available: [a.runtime]).name)
        }
        XCTAssertEqual(b.artifacts[0].name, try b.choose(available: Set(b.artifacts.map(\.runtime))).name)
        assertMentions(refused { _ = try b.choose(available: ["no-such-runtime"]) }, "no-such-runtime")
        // parity "runtime_not_run" (the runtime could not run at export) is loaded, not refused
        let notRun = try passing([(["artifacts", 0, "parity"], "runtime_not_run")])
        XCTAssertEqual(notRun.artifacts[0].name, try notRun.choose(available: [notRun.artifacts[0].runtime]).name)
    }

    func testChooseNeverPicksADraft() throws {
        // a speculative-decoding draft lowered beside its target (edgeslm export --draft) is not a chat model
        let b = try passing([(["artifacts", 0, "role"], "draft")])
        let draft = b.artifacts[0]
        XCTAssertEqual(draft.role, "draft")
        assertMentions(refused { _ = try b.choose(available: [draft.runtime]) }, "no model artifact",
                       "\(draft.name) for \(draft.runtime) (draft)")
        if b.artifacts.count > 1 {
            XCTAssertEqual(b.artifacts[1].name, try b.choose(available: Set(b.artifacts.map(\.runtime))).name)
        }
        XCTAssertEqual(try passing().artifacts[0].role, "model")
    }
}
