package dev.edgeslm.demo

import android.util.Log
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import dev.edgeslm.core.Artifact
import dev.edgeslm.core.Bundle
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import java.io.File

/**
 * The on-device half of golden.json's `greedy` vectors: each artifact, run greedily by its own runtime on this device
 * (emulator in CI: .github/workflows/android.yml), must reproduce the first `must_match` tokens edgeslm's runtime
 * produced at export (the tokens before the first near-tie, which other kernels may break either way).
 *
 * - onnxruntime-genai: the Generator gives token ids: the first must_match ids are compared exactly, fed the golden
 *   prompt_ids; the app's own encoding of the prompt is also checked against prompt_ids.
 * - ExecuTorch: LlmModule hands back text only: the text prefix is compared, i.e. the golden tokens[0, must_match)
 *   decoded from the bundle's tokenizer.json (special tokens skipped) must begin what the device printed; the runner's
 *   own prompt token count (onStats prompt_tokens) must equal the golden prompt_ids' length.
 *
 * The bundle is the demo one `edgeslm push` put at /data/local/tmp/edgeslm/demo-android (instrumentation argument
 * `bundle` overrides it).
 */
@RunWith(AndroidJUnit4::class)
class GreedyOnDeviceTest {
    companion object {
        const val DEFAULT_BUNDLE = "/data/local/tmp/edgeslm/demo-android"
        const val TAG = "edgeslm-greedy"
    }

    private val dir = File(InstrumentationRegistry.getArguments().getString("bundle") ?: DEFAULT_BUNDLE)

    private class Case(val entry: JSONObject, val artifact: Artifact) {
        val prompt: String = entry.getString("prompt")
        val addBos = entry.getBoolean("add_bos")
        val promptIds = entry.getJSONArray("prompt_ids").let { a -> List(a.length()) { a.getInt(it) } }
        val tokens = entry.getJSONArray("tokens").let { a -> List(a.length()) { a.getInt(it) } }
        val mustMatch = entry.getInt("must_match")
    }

    /** golden.json's greedy entries with tokens for [runtime] (their artifacts verified); at least one. */
    private fun cases(runtime: String): Pair<Bundle, List<Case>> {
        assertTrue("no bundle at $dir (push one: edgeslm push out/demo-android)", File(dir, Bundle.MANIFEST).isFile)
        val bundle = Bundle.open(dir)
        val greedy = bundle.readGolden().getJSONArray("greedy")
        val out = (0 until greedy.length()).map { greedy.getJSONObject(it) }
            .filter { it.getString("runtime") == runtime && !it.isNull("tokens") }
            .map { e ->
                val a = bundle.artifacts.firstOrNull { it.name == e.getString("artifact") }
                    ?: throw AssertionError("golden.json names ${e.getString("artifact")}, which the manifest does not list")
                bundle.verify(a)
                Case(e, a)
            }
        assertTrue("golden.json has no greedy tokens for $runtime in $dir", out.isNotEmpty())
        return bundle to out
    }

    @Test
    fun onnxruntimeGenaiReproducesTheGoldenGreedyTokenIds() {
        val (bundle, cases) = cases("onnxruntime-genai")
        for (c in cases) OrtGenaiEngine().use { engine ->
            engine.load(bundle, c.artifact)
            val s = bundle.settingsFor(c.artifact)
            val encoded = engine.encode(c.prompt, c.addBos, s.bosId, s.bos).toList()
            assertEquals("${c.artifact.name}: the prompt's ids on the device", c.promptIds, encoded)
            val got = mutableListOf<Int>()
            engine.generateIds(c.promptIds.toIntArray(), s, c.tokens.size, greedy = true) { id, _ -> got += id; true }
            Log.i(TAG, "${c.artifact.name}: golden ${c.tokens} device $got must_match ${c.mustMatch}")
            assertTrue("${c.artifact.name}: generated ${got.size} tokens, golden must_match is ${c.mustMatch}", got.size >= c.mustMatch)
            assertEquals("${c.artifact.name}: the first ${c.mustMatch} greedy token ids", c.tokens.take(c.mustMatch), got.take(c.mustMatch))
        }
    }

    @Test
    fun executorchReproducesTheGoldenGreedyTextPrefix() {
        val (bundle, cases) = cases("executorch")
        for (c in cases) ExecuTorchEngine().use { engine ->
            engine.load(bundle, c.artifact)
            val decoder = TokenizerJsonDecoder(c.artifact.tokenizer)
            val expected = decoder.decode(c.tokens.take(c.mustMatch))
            val printed = StringBuilder()
            val stats = engine.complete(c.prompt, if (c.addBos) 1 else 0, c.promptIds.size + c.tokens.size, 0f) { printed.append(it); true }
            Log.i(TAG, "${c.artifact.name}: golden \"${decoder.decode(c.tokens)}\" device \"$printed\" must_match ${c.mustMatch} (prefix \"$expected\"); stats $stats")
            if (stats != null && stats.has("prompt_tokens"))
                assertEquals("${c.artifact.name}: prompt tokens the runner encoded", c.promptIds.size, stats.getInt("prompt_tokens"))
            assertTrue("${c.artifact.name}: the device printed nothing", printed.isNotEmpty())
            // SentencePiece: whether the first piece's leading space is printed differs between decoders
            val (want, have) = if (decoder.byteLevel) expected to printed.toString() else expected.trimStart() to printed.trimStart().toString()
            assertTrue("${c.artifact.name}: the device's greedy text \"$printed\" does not start with the golden first ${c.mustMatch} tokens \"$want\"",
                have.startsWith(want))
        }
    }
}
