import Foundation
import XCTest
@testable import EdgeSLMCore

final class GenerationSettingsTests: XCTestCase {
    func testBundleSettingsAreFilteredPerRuntime() throws {
        let b = try TestBundles.open()
        let m = try TestBundles.manifest(try TestBundles.dir)
        let app = m["app"] as! [String: Any]
        let gen = app["generation"] as! [String: Any]
        let honoured = app["honoured"] as! [String: [String]]
        for a in b.artifacts {
            let s = try b.settings(for: a)
            let want = Set(gen.keys.filter { honoured[a.runtime]!.contains($0) && !(gen[$0] is NSNull) })
            XCTAssertEqual(want, Set(s.values.keys), a.name)
            XCTAssertEqual(Set(gen.keys).subtracting(want).filter { !(gen[$0] is NSNull) }, Set(s.ignored.keys), a.name)
            XCTAssertEqual((app["stop"] as! [String: Any])["eos_ids"] as? [Int], s.eosIds)
            XCTAssertEqual((app["prompt"] as! [String: Any])["add_bos"] as? Bool, s.addBos)
        }
    }

    private let settings = GenerationSettings(
        runtime: "coreml", values: ["temperature": .double(0.7), "max_new_tokens": .int(64)],
        ignored: ["top_p": .double(0.9)], eosIds: [2], stopStrings: ["</s>", ""], addBos: false)

    func testStopStringsAreStrippedFromStreamedText() {
        let f = settings.stopFilter()
        let out = ["Hello", " wor", "ld<", "/s", ">ignored"].map { f.push($0) }
        XCTAssertEqual("Hello world", out.joined() + f.finish())
        XCTAssertTrue(f.stopped)
        XCTAssertEqual("", f.push("more"))
        // a held-back tail that never becomes a stop string is shown at the end
        let g = settings.stopFilter()
        XCTAssertEqual("a", g.push("a</"))
        XCTAssertEqual("</x🙂", g.push("x🙂") + g.finish())
        XCTAssertFalse(g.stopped)
        XCTAssertEqual("caf", StopStringFilter.strip("caf</s>é", ["</s>"]))
    }

    func testSamplerIsGreedyWhenAsked() {
        var rng = SystemRandomNumberGenerator()
        let logits: [Float] = [0.1, 3.0, -1.0, 2.9]
        XCTAssertEqual(1, Sampler.argmax(logits))
        XCTAssertEqual(1, Sampler.pick(logits, settings: settings.greedy(), using: &rng))
        XCTAssertEqual(64, settings.maxNewTokens)
        XCTAssertTrue((0..<4).contains(Sampler.pick(logits, settings: settings, using: &rng)))
    }
}
