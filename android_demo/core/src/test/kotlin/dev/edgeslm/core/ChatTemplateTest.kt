package dev.edgeslm.core

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The rendering rule of docs/apps.md on hand-written templates (the bundle's own is checked in GoldenVectorsTest). */
class ChatTemplateTest {
    private fun role(p: String, s: String) = JSONObject().put("prefix", p).put("suffix", s)

    // the example of docs/apps.md (Phi-3 style, BOS in begin and system.prefix)
    private val phi = JSONObject()
        .put("kind", "simple").put("reason", JSONObject.NULL).put("jinja", "{% for message in messages %}...")
        .put("begin", "<s>")
        .put("system", role("<s><|system|>\n", "<|end|>\n").put("supported", true))
        .put("user", role("<|user|>\n", "<|end|>\n"))
        .put("assistant", role("<|assistant|>\n", "<|end|>\n"))
        .put("generation_prompt", "<|assistant|>\n")

    @Test fun rendersTheDocumentedRule() {
        val t = ChatTemplate.from(phi)
        assertEquals("<s><|user|>\nHi<|end|>\n<|assistant|>\n", t.render(listOf(Message("user", "Hi")), true))
        assertEquals("<s><|user|>\nHi<|end|>\n", t.render(listOf(Message("user", "Hi")), false))
        assertEquals("<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|user|>\nAnd?<|end|>\n<|assistant|>\n",
            t.render(listOf(Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "And?")), true))
    }

    @Test fun endIsAppendedWhenNoReplyIsWanted() {
        val t = ChatTemplate.from(JSONObject(phi.toString()).put("end", "<|endoftext|>"))
        assertEquals("<s><|user|>\nHi<|end|>\n<|endoftext|>", t.render(listOf(Message("user", "Hi")), false))
        assertEquals("<s><|user|>\nHi<|end|>\n<|assistant|>\n", t.render(listOf(Message("user", "Hi")), true))
    }

    @Test fun trimContentStripsLikePython() {
        val t = ChatTemplate.from(JSONObject(phi.toString()).put("trim_content", true))
        assertEquals("<s><|user|>\nspaced out<|end|>\n<|assistant|>\n", t.render(listOf(Message("user", "  spaced out \n")), true))
        assertEquals("<s><|user|>\n  x <|end|>\n", ChatTemplate.from(phi).render(listOf(Message("user", "  x ")), false))
        // Python's str.strip() set: " \t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
        assertEquals("a b", pythonStrip("\u0085\u00a0\u3000\u2009\u001f a b\u2028\u000b"))
        assertEquals("\u200bx\u200b", pythonStrip(" \u200bx\u200b "))   // zero-width space is not whitespace in Python
        assertEquals("", pythonStrip(" \t "))
    }

    @Test fun systemMessageRefusedWhenUnsupported() {
        val t = ChatTemplate.from(JSONObject(phi.toString()).put("system", JSONObject().put("supported", false)))
        assertEquals("<s><|user|>\nHi<|end|>\n", t.render(listOf(Message("user", "Hi")), false))
        val e = refused { t.render(listOf(Message("system", "x"), Message("user", "Hi")), true) }
        assertTrue(e.problem, e.problem.contains("system"))
    }

    @Test fun systemMessageOnlyFirst() {
        val t = ChatTemplate.from(phi)
        refused { t.render(listOf(Message("user", "Hi"), Message("system", "x")), true) }
        refused { t.render(listOf(Message("tool", "x")), true) }
        refused { t.render(emptyList(), true) }
    }

    @Test fun kindNoneRefusesWithTheReason() {
        // the exporter writes only kind, reason and jinja for "none"
        val t = ChatTemplate.from(JSONObject().put("kind", "none").put("reason", "the model has no chat template")
            .put("jinja", JSONObject.NULL))
        val e = refused { t.render(listOf(Message("user", "Hi")), true) }
        assertTrue(e.problem, e.problem.contains("the model has no chat template"))
    }

    @Test fun unknownKindAndMissingPiecesAreRefused() {
        refused { ChatTemplate.from(JSONObject(phi.toString()).put("kind", "jinja-only")) }
        refused { ChatTemplate.from(JSONObject(phi.toString()).apply { remove("user") }) }
        refused { ChatTemplate.from(JSONObject(phi.toString()).put("generation_prompt", JSONObject.NULL)) }
    }
}
