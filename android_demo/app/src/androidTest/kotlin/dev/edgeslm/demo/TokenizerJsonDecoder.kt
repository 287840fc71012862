package dev.edgeslm.demo

import dev.edgeslm.core.Utf8StreamAssembler
import org.json.JSONObject
import java.io.File

/**
 * Ids → text straight from a tokenizer.json, for the one engine whose API hands back text only (ExecuTorch's
 * LlmModule): the golden greedy token ids are turned into the text the device must print. Byte-level BPE (GPT-2,
 * Llama 3, Qwen) and byte-fallback SentencePiece (Llama 2, Gemma) are read; each token's raw bytes go through core's
 * [Utf8StreamAssembler], special tokens are skipped (as transformers' `skip_special_tokens=True`).
 */
class TokenizerJsonDecoder(file: File) {
    val byteLevel: Boolean
    private val pieces = HashMap<Int, String>()
    private val special = HashSet<Int>()

    init {
        val tj = JSONObject(file.readText(Charsets.UTF_8))
        val vocab = tj.getJSONObject("model").optJSONObject("vocab")
            ?: throw IllegalArgumentException("$file: model.vocab is not a token → id map (model type ${tj.getJSONObject("model").optString("type")})")
        for (k in vocab.keys()) pieces[vocab.getInt(k)] = k
        val added = tj.optJSONArray("added_tokens")
        if (added != null) for (i in 0 until added.length()) {
            val t = added.getJSONObject(i)
            pieces[t.getInt("id")] = t.getString("content")
            if (t.optBoolean("special")) special += t.getInt("id")
        }
        val dec = tj.optJSONObject("decoder")
        val types = mutableSetOf<String>()
        if (dec != null) {
            types += dec.optString("type")
            dec.optJSONArray("decoders")?.let { a -> for (i in 0 until a.length()) types += a.getJSONObject(i).optString("type") }
        }
        byteLevel = "ByteLevel" in types
        require(byteLevel || "ByteFallback" in types || "Metaspace" in types) {
            "$file: decoder ${types.joinToString()} is neither byte-level nor byte-fallback"
        }
    }

    fun tokenBytes(id: Int): ByteArray {
        val p = pieces[id] ?: throw IllegalArgumentException("token id $id is not in the vocabulary")
        if (byteLevel) return ByteArray(p.length) { i ->
            (BYTE_OF[p[i]] ?: throw IllegalArgumentException("token $id ($p) is not byte-level")).toByte()
        }
        if (p.length == 6 && p.startsWith("<0x") && p.endsWith(">")) return byteArrayOf(p.substring(3, 5).toInt(16).toByte())
        return p.replace('\u2581', ' ').toByteArray(Charsets.UTF_8)
    }

    fun decode(ids: List<Int>): String {
        val asm = Utf8StreamAssembler()
        val sb = StringBuilder()
        for (id in ids) if (id !in special) sb.append(asm.push(tokenBytes(id)))
        return sb.append(asm.finish()).toString()
    }

    private companion object {
        /** GPT-2's byte ↔ printable character table, inverted (what byte-level BPE tokens spell). */
        val BYTE_OF: Map<Char, Int> = run {
            val bs = ((33..126) + (161..172) + (174..255)).toMutableList()
            val cs = bs.toMutableList()
            var n = 0
            for (b in 0..255) if (b !in bs) { bs += b; cs += 256 + n; n++ }
            cs.indices.associate { cs[it].toChar() to bs[it] }
        }
    }
}
