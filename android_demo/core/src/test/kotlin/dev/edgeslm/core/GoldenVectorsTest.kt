package dev.edgeslm.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.json.JSONObject
import org.junit.Test

/** The bundle's golden.json, checked from the app side: the same file the exporter checked against transformers. */
class GoldenVectorsTest {
    private val bundle = TestBundles.open()
    private val golden = bundle.readGolden()

    @Test fun bundleOpensAndEveryArtifactVerifies() {
        assertEquals("edgeslm-golden", golden.getString("kind"))
        assertTrue(bundle.artifacts.isNotEmpty())
        for (a in bundle.artifacts) {
            bundle.verify(a)
            assertTrue("${a.name}: load.path ${a.loadPath} exists", a.loadPath.exists())
            assertTrue("${a.name}: tokenizer ${a.tokenizer} is a file", a.tokenizer.isFile)
            assertTrue("${a.name}: runtime ${a.runtime}", a.runtime in setOf("executorch", "onnxruntime-genai", "coreml"))
            assertTrue("${a.name}: parity ${a.parity}", a.parity in setOf("passed", "failed", "runtime_not_run"))
        }
    }

    @Test fun chatRenderingEqualsEveryGoldenPrompt() {
        val chat = bundle.chatTemplate()
        val cases = golden.getJSONArray("chat").objectList()
        if (chat.kind == ChatTemplate.NONE) {
            assertTrue("kind none but golden.json has chat prompts", cases.isEmpty())
            val e = refused { chat.render(listOf(Message("user", "Hi")), true) }
            assertTrue(e.problem, e.problem.contains(chat.reason!!))
            return
        }
        assertTrue("golden.json has no chat cases for a simple template", cases.isNotEmpty())
        for ((i, c) in cases.withIndex()) {
            val msgs = c.getJSONArray("messages").objectList().map { Message(it.getString("role"), it.getString("content")) }
            assertEquals("chat[$i]", c.getString("prompt"), chat.render(msgs, c.getBoolean("add_generation_prompt")))
        }
    }

    /** The stream vectors; empty only for a tokenizer whose decoder is neither byte-level nor byte-fallback, which
     *  golden.json then says in `stream_note`. */
    private fun streams(): List<JSONObject> {
        val tok = golden.getJSONObject("tokenizer")
        val streams = tok.getJSONArray("stream").objectList()
        if (streams.isEmpty()) assertTrue("golden.json has no stream vectors and no stream_note", tok.optString("stream_note").isNotEmpty())
        return streams
    }

    @Test fun greedyVectorsCoverEveryArtifact() {
        val greedy = golden.getJSONArray("greedy").objectList()
        for (a in bundle.artifacts) {
            val g = greedy.filter { it.getString("artifact") == a.name }
            assertEquals("greedy entries for ${a.name} (${a.runtime})", 1, g.size)
            val e = g.single()
            assertEquals(a.runtime, e.getString("runtime"))
            if (e.isNull("tokens")) {
                assertEquals(0, e.getInt("must_match")); assertTrue(e.optString("reason").isNotEmpty())
            } else {
                val n = e.getJSONArray("tokens").length()
                assertTrue("${a.name}: no greedy tokens", n > 0)
                assertTrue("${a.name}: must_match ${e.getInt("must_match")} of $n", e.getInt("must_match") in 0..n)
                assertEquals(bundle.settingsFor(a).addBos, e.getBoolean("add_bos"))
            }
        }
    }

    @Test fun assemblerEmitsExactlyTheGoldenChunks() {
        val streams = streams()
        for ((i, s) in streams.withIndex()) {
            val tb = s.getJSONArray("token_bytes")
            val chunks = s.getJSONArray("chunks")
            assertEquals("stream[$i]: one chunk per token", tb.length(), chunks.length())
            val asm = Utf8StreamAssembler()
            val got = (0 until tb.length()).map { asm.push(tb.getJSONArray(it).byteArray()) }.toMutableList()
            // the exporter appends the final flush (U+FFFD for an incomplete tail) to the last token's chunk
            if (got.isNotEmpty()) got[got.size - 1] = got.last() + asm.finish()
            assertEquals("stream[$i] chunks", (0 until chunks.length()).map { chunks.getString(it) }, got)
            assertEquals("stream[$i] text", s.getString("text"), got.joinToString(""))
        }
    }

    @Test fun decodeTextsEqualAssembledBytesWhereGiven() {
        val tok = golden.getJSONObject("tokenizer")
        // ids -> bytes, from every vector that gives both
        val bytesOf = HashMap<Int, ByteArray>()
        for (s in streams()) {
            val ids = s.getJSONArray("ids"); val tb = s.getJSONArray("token_bytes")
            assertEquals(ids.length(), tb.length())
            for (k in 0 until ids.length()) bytesOf[ids.getInt(k)] = tb.getJSONArray(k).byteArray()
        }
        var checked = 0
        for ((i, d) in tok.getJSONArray("decode").objectList().withIndex()) {
            val ids = d.getJSONArray("ids")
            val given = d.optJSONArray("token_bytes")
            val parts = (0 until ids.length()).map { k -> given?.getJSONArray(k)?.byteArray() ?: bytesOf[ids.getInt(k)] }
            if (parts.any { it == null }) continue
            val asm = Utf8StreamAssembler()
            val text = parts.joinToString("") { asm.push(it!!) } + asm.finish()
            // SentencePiece decoders (byte-fallback tokenizers) drop the space "▁" of the first token in decode()
            val want = d.getString("text")
            if (text != want && text == " $want") { checked++; continue }
            assertEquals("decode[$i]", want, text)
            checked++
        }
        if (streams().isNotEmpty()) assertTrue("no decode vector could be checked (no token bytes for its ids)", checked > 0)
    }

    @Test fun goldenSplitCharacterIsEmittedOnceWhole() {
        var splits = 0
        val streams = streams()
        for (s in streams) {
            val tb = s.getJSONArray("token_bytes"); val asm = Utf8StreamAssembler()
            for (k in 0 until tb.length()) {
                val b = tb.getJSONArray(k).byteArray()
                val out = asm.push(b)
                assertFalse("half a character emitted: $out", out.contains('\uFFFD'))
                if (out.isNotEmpty()) {
                    assertFalse("lone high surrogate at the end of $out", Character.isHighSurrogate(out.last()))
                }
                // a token that ends inside a character emits nothing of it; the next one emits it whole
                if (b.isNotEmpty() && out.isEmpty()) splits++
            }
            asm.finish()
        }
        // the exporter says whether its tokenizer splits a character across tokens on its texts; the demo's does
        val note = golden.getJSONObject("tokenizer").optString("stream_note")
        if (streams.isNotEmpty() && !note.startsWith("no character"))
            assertTrue("golden.json has no character split across tokens ($note)", splits > 0)
    }
}
