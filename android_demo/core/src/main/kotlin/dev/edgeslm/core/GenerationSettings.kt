package dev.edgeslm.core

import org.json.JSONObject

/**
 * What one runtime applies of the bundle's generation defaults (manifest `app.generation`, filtered by
 * `app.honoured[runtime]`), plus how a prompt starts and where generation stops (`app.prompt`, `app.stop`).
 * Values a runtime does not honour are kept in [ignored] so the app can say so instead of pretending.
 */
class GenerationSettings(
    val runtime: String,
    /** The defaults this runtime honours, by manifest name (do_sample, temperature, top_p, top_k, ...). */
    val values: Map<String, Any>,
    /** The defaults this runtime cannot apply. */
    val ignored: Map<String, Any>,
    /** Generation ends at any of these token ids. */
    val eosIds: List<Int>,
    /** Text a runtime may hand back for an EOS token: stripped from what the user sees. */
    val stopStrings: List<String>,
    /** Whether a raw (non-chat) prompt starts with BOS (ExecuTorch: numBos = 1 exactly when true). */
    val addBos: Boolean,
    val bosId: Int?,
    val bos: String?,
) {
    val doSample: Boolean? get() = values["do_sample"] as? Boolean
    val temperature: Double? get() = (values["temperature"] as? Number)?.toDouble()
    val topP: Double? get() = (values["top_p"] as? Number)?.toDouble()
    val topK: Int? get() = (values["top_k"] as? Number)?.toInt()
    val repetitionPenalty: Double? get() = (values["repetition_penalty"] as? Number)?.toDouble()
    val maxNewTokens: Int? get() = (values["max_new_tokens"] as? Number)?.toInt()

    /** A fresh filter for one streamed reply (see [StopStringFilter]). */
    fun stopFilter(): StopStringFilter = StopStringFilter(stopStrings)

    companion object {
        fun from(app: JSONObject, runtime: String): GenerationSettings {
            val gen = app.obj("generation", "app")
            val honouredJson = app.obj("honoured", "app")
            val honoured = honouredJson.optJSONArray(runtime)?.strings("app.honoured.$runtime")?.toSet()
                ?: throw BundleException("manifest.json: app.honoured has no entry for runtime \"$runtime\"", REEXPORT)
            val values = LinkedHashMap<String, Any>()
            val ignored = LinkedHashMap<String, Any>()
            for (k in gen.keys().asSequence().toList().sorted()) {
                val v = gen.valueOrNull(k) ?: continue
                if (k in honoured) values[k] = v else ignored[k] = v
            }
            val prompt = app.obj("prompt", "app")
            val stop = app.obj("stop", "app")
            return GenerationSettings(
                runtime = runtime,
                values = values,
                ignored = ignored,
                eosIds = stop.arr("eos_ids", "app.stop").ints("app.stop.eos_ids"),
                stopStrings = stop.arr("strings", "app.stop").strings("app.stop.strings").filter { it.isNotEmpty() },
                addBos = prompt.bool("add_bos", "app.prompt"),
                bosId = prompt.valueOrNull("bos_id") as? Int,
                bos = prompt.strOrNull("bos", "app.prompt"),
            )
        }
    }
}

/**
 * Strips stop strings from streamed text: [push] returns what is safe to show now, holding back a tail that could
 * be the start of a stop string; once a stop string appears, everything from it on is dropped and [stopped] is true.
 * [finish] returns the held-back tail (when no stop string completed).
 */
class StopStringFilter(private val stops: List<String>) {
    private val held = StringBuilder()
    var stopped = false
        private set

    fun push(text: String): String {
        if (stopped) return ""
        held.append(text)
        val s = held.toString()
        val hit = stops.mapNotNull { st -> s.indexOf(st).takeIf { it >= 0 } }.minOrNull()
        if (hit != null) {
            stopped = true
            held.setLength(0)
            return s.substring(0, hit)
        }
        // keep the longest suffix of s that is a proper prefix of some stop string
        var keep = 0
        for (st in stops) for (n in minOf(st.length - 1, s.length) downTo 1) {
            if (n <= keep) break
            if (s.endsWith(st.substring(0, n))) { keep = n; break }
        }
        // never split a surrogate pair
        var cut = s.length - keep
        if (cut in 1 until s.length && Character.isHighSurrogate(s[cut - 1])) cut -= 1
        held.setLength(0)
        held.append(s, cut, s.length)
        return s.substring(0, cut)
    }

    fun finish(): String {
        if (stopped) return ""
        val s = held.toString()
        held.setLength(0)
        return s
    }

    companion object {
        /** [text] cut at the first stop string (whole-text form of the filter). */
        fun strip(text: String, stops: List<String>): String {
            val f = StopStringFilter(stops)
            return f.push(text) + f.finish()
        }
    }
}
