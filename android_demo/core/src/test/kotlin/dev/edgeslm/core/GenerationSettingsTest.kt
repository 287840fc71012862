package dev.edgeslm.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

class GenerationSettingsTest {
    @Test fun bundleSettingsAreFilteredPerRuntime() {
        val b = TestBundles.open()
        val gen = b.app.getJSONObject("generation")
        val honoured = b.app.getJSONObject("honoured")
        for (a in b.artifacts) {
            val s = b.settingsFor(a)
            val h = honoured.getJSONArray(a.runtime)
            val names = (0 until h.length()).map { h.getString(it) }.toSet()
            assertEquals(a.runtime, gen.keys().asSequence().filter { it in names && !gen.isNull(it) }.toSet(), s.values.keys)
            assertTrue(s.ignored.keys.none { it in names })
            assertEquals(b.app.getJSONObject("prompt").getBoolean("add_bos"), s.addBos)
            val eos = b.app.getJSONObject("stop").getJSONArray("eos_ids")
            assertEquals((0 until eos.length()).map { eos.getInt(it) }, s.eosIds)
            assertTrue("stop has eos ids", s.eosIds.isNotEmpty())
        }
    }

    private val app = JSONObject()
        .put("prompt", JSONObject().put("add_bos", true).put("bos_id", 1).put("bos", "<s>"))
        .put("stop", JSONObject().put("eos_ids", JSONArray(listOf(2, 32007))).put("strings", JSONArray(listOf("</s>", "<|end|>"))))
        .put("generation", JSONObject().put("do_sample", false).put("temperature", 1.0).put("top_p", 1.0).put("top_k", 50)
            .put("repetition_penalty", 1.0).put("max_new_tokens", 64))
        .put("honoured", JSONObject().put("executorch", JSONArray(listOf("temperature", "max_new_tokens")))
            .put("coreml", JSONArray()))

    @Test fun honouredFiltering() {
        val et = GenerationSettings.from(app, "executorch")
        assertEquals(setOf("temperature", "max_new_tokens"), et.values.keys)
        assertEquals(64, et.maxNewTokens)
        assertEquals(1.0, et.temperature!!, 0.0)
        assertEquals(null, et.topK)
        assertEquals(setOf("do_sample", "top_p", "top_k", "repetition_penalty"), et.ignored.keys)
        assertTrue(et.addBos)
        assertEquals(1, et.bosId)
        assertEquals(listOf(2, 32007), et.eosIds)
        assertTrue(GenerationSettings.from(app, "coreml").values.isEmpty())
        refused { GenerationSettings.from(app, "onnxruntime-genai") }
    }

    @Test fun stopStringsAreStrippedFromStreamedText() {
        val f = GenerationSettings.from(app, "executorch").stopFilter()
        val out = listOf("Hello", " wor", "ld<", "/s", ">ignored").map { f.push(it) }
        assertEquals("Hello world", out.joinToString("") + f.finish())
        assertTrue(f.stopped)
        assertEquals("", f.push("more"))
        // a partial stop string that does not complete is released
        val g = StopStringFilter(listOf("</s>"))
        assertEquals("a", g.push("a</"))
        assertEquals("</b", g.push("b"))
        assertEquals("", g.push("<"))
        assertEquals("<", g.finish())
        assertFalse(g.stopped)
        assertEquals("x", StopStringFilter.strip("x<|end|>y", listOf("</s>", "<|end|>")))
        assertEquals("🙂", StopStringFilter.strip("🙂</s>", listOf("</s>")))
    }
}
