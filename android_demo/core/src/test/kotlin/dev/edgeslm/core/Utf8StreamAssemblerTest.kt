package dev.edgeslm.core

import org.junit.Assert.assertEquals
import org.junit.Test

/** Multi-byte characters split across tokens, built by hand. */
class Utf8StreamAssemblerTest {
    private fun stream(vararg tokens: ByteArray): List<String> {
        val a = Utf8StreamAssembler()
        return tokens.map { a.push(it) } + a.finish()
    }

    @Test fun twoByteCharacterSplitOneAndOne() {
        // "café": c a f C3 | A9
        assertEquals(listOf("caf", "", "é", ""), stream("caf".toByteArray(), bytesOf(0xC3), bytesOf(0xA9), ByteArray(0)).dropLast(1))
        assertEquals(listOf("", "é", ""), stream(bytesOf(0xC3), bytesOf(0xA9)))
    }

    @Test fun fourByteEmojiSplitOneAndThree() {
        // 🙂 U+1F642 = F0 9F 99 82
        assertEquals(listOf("", "🙂", ""), stream(bytesOf(0xF0), bytesOf(0x9F, 0x99, 0x82)))
        assertEquals(listOf("x", "🙂y", ""), stream(bytesOf(0x78, 0xF0, 0x9F), bytesOf(0x99, 0x82, 0x79)))
        assertEquals(listOf("", "", "", "🙂", ""), stream(bytesOf(0xF0), bytesOf(0x9F), bytesOf(0x99), bytesOf(0x82)))
    }

    @Test fun threeByteCharacterSplitTwoAndOne() {
        // 中 = E4 B8 AD
        assertEquals(listOf("a", "中文", ""), stream(bytesOf(0x61, 0xE4, 0xB8), bytesOf(0xAD, 0xE6, 0x96, 0x87)))
    }

    @Test fun emojiIsNeverHalfEmitted() {
        val text = "ok 🙂🙃 中文 é"
        val bytes = text.toByteArray(Charsets.UTF_8)
        for (cut in 0..bytes.size) {
            val out = stream(bytes.copyOfRange(0, cut), bytes.copyOfRange(cut, bytes.size))
            assertEquals("cut at $cut", text, out.joinToString(""))
            for (o in out) if (o.isNotEmpty()) {
                assert(!Character.isHighSurrogate(o.last())) { "cut $cut: lone high surrogate" }
                assert(!Character.isLowSurrogate(o.first())) { "cut $cut: lone low surrogate" }
                assert(!o.contains('\uFFFD')) { "cut $cut: replacement char in $o" }
            }
        }
    }

    @Test fun byteByByteEqualsWholeDecode() {
        val text = "Grüße, мир, 世界, 👩‍💻!"
        val a = Utf8StreamAssembler()
        val sb = StringBuilder()
        for (b in text.toByteArray(Charsets.UTF_8)) sb.append(a.push(byteArrayOf(b)))
        sb.append(a.finish())
        assertEquals(text, sb.toString())
    }

    @Test fun invalidBytesBecomeReplacementCharacters() {
        // a lone continuation byte is invalid at once; a lead byte followed by ASCII is invalid when the ASCII arrives
        assertEquals(listOf("\uFFFDa", "", "\uFFFDb", ""), stream(bytesOf(0x80, 0x61), bytesOf(0xC3), bytesOf(0x62)))
        // an incomplete sequence at the end is flushed by finish() as one U+FFFD (as Python's decoder does)
        assertEquals(listOf("x", "\uFFFD"), stream(bytesOf(0x78, 0xF0, 0x9F, 0x99)))
        // UTF-16 surrogates encoded in UTF-8 are invalid
        assertEquals("\uFFFD\uFFFD\uFFFD", stream(bytesOf(0xED, 0xA0, 0x80)).joinToString(""))
    }

    @Test fun replacementMatchesPythonsIncrementalDecoder() {
        // expected values: codecs.getincrementaldecoder("utf-8")("replace"), whole input then final=True
        val r = "\uFFFD"
        val cases = mapOf(
            "eda080" to r.repeat(3), "8061c362" to "${r}a${r}b", "f09f99" to r, "e080af" to r.repeat(3),
            "f4908080" to r.repeat(4), "c0af" to r.repeat(2), "e180e2f09192f1bf41" to r.repeat(4) + "A",
            "f888808080" to r.repeat(5),
        )
        for ((hex, want) in cases) {
            val bytes = ByteArray(hex.length / 2) { hex.substring(2 * it, 2 * it + 2).toInt(16).toByte() }
            assertEquals("$hex whole", want, stream(bytes).joinToString(""))
            assertEquals("$hex byte by byte", want, stream(*bytes.map { byteArrayOf(it) }.toTypedArray()).joinToString(""))
        }
    }

    @Test fun finishResetsForTheNextReply() {
        val a = Utf8StreamAssembler()
        a.push(bytesOf(0xC3))
        assertEquals("\uFFFD", a.finish())
        assertEquals("é", a.push(bytesOf(0xC3, 0xA9)))
        assertEquals("", a.finish())
    }
}
