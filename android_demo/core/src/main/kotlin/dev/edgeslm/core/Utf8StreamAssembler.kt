package dev.edgeslm.core

/**
 * Turns the raw bytes of streamed tokens into text without ever emitting half a character: [push] returns only the
 * complete UTF-8 characters so far and holds back an incomplete trailing sequence (a character split across two
 * tokens is emitted once, whole, with the token that completes it); [finish] flushes what is left at the end and
 * makes the assembler ready for the next reply.
 *
 * Invalid bytes become U+FFFD, one per maximal subpart (Unicode §3.9, "U+FFFD substitution of maximal subparts"),
 * exactly as Python's `codecs.getincrementaldecoder("utf-8")(errors="replace")` that wrote golden.json does.
 * Written out by hand rather than with java.nio's decoder, whose replacement count differs (e.g. for encoded
 * surrogates) and is not the same across JVMs and Android's ICU-backed charsets.
 */
class Utf8StreamAssembler {
    private var cp = 0          // code point being assembled
    private var need = 0        // continuation bytes still needed (0: between characters)
    private var lo = 0x80       // allowed range of the next continuation byte
    private var hi = 0xBF

    fun push(bytes: ByteArray): String {
        val sb = StringBuilder(bytes.size + 2)
        for (x in bytes) feed(x.toInt() and 0xFF, sb)
        return sb.toString()
    }

    fun finish(): String {
        val out = if (need > 0) REPLACEMENT.toString() else ""
        need = 0
        return out
    }

    private fun feed(b: Int, sb: StringBuilder) {
        if (need > 0) {
            if (b in lo..hi) {
                cp = (cp shl 6) or (b and 0x3F)
                need--
                lo = 0x80; hi = 0xBF
                if (need == 0) sb.appendCodePoint(cp)
                return
            }
            sb.append(REPLACEMENT)  // the incomplete sequence so far is one maximal subpart; b starts afresh
            need = 0
        }
        when (b) {
            in 0x00..0x7F -> sb.append(b.toChar())
            in 0xC2..0xDF -> start(b and 0x1F, 1, 0x80, 0xBF)
            0xE0 -> start(b and 0x0F, 2, 0xA0, 0xBF)
            in 0xE1..0xEC, 0xEE, 0xEF -> start(b and 0x0F, 2, 0x80, 0xBF)
            0xED -> start(b and 0x0F, 2, 0x80, 0x9F)          // no UTF-16 surrogates
            0xF0 -> start(b and 0x07, 3, 0x90, 0xBF)
            in 0xF1..0xF3 -> start(b and 0x07, 3, 0x80, 0xBF)
            0xF4 -> start(b and 0x07, 3, 0x80, 0x8F)          // nothing above U+10FFFF
            else -> sb.append(REPLACEMENT)                    // 80..C1, F5..FF: never valid as a first byte
        }
    }

    private fun start(bits: Int, n: Int, low: Int, high: Int) {
        cp = bits; need = n; lo = low; hi = high
    }

    private companion object {
        const val REPLACEMENT = '\uFFFD'
    }
}
