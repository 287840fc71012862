package dev.edgeslm.demo

import dev.edgeslm.core.Artifact
import dev.edgeslm.core.Bundle
import dev.edgeslm.core.BundleException
import dev.edgeslm.core.Engine
import dev.edgeslm.core.GenerationSettings
import dev.edgeslm.core.GenerationStats
import org.json.JSONObject
import org.pytorch.executorch.extension.llm.LlmCallback
import org.pytorch.executorch.extension.llm.LlmModule

/**
 * The `.pte` artifact on ExecuTorch's `LlmModule` (org.pytorch:executorch-android >= 1.3.0: the constructor with
 * numBos/numEos and generate(..., temperature, numBos, numEos) exist since 1.2.0, close() since 1.3.0).
 * Semantics this relies on (android_demo/README.md):
 * - BOS comes from the constructor's numBos (the generate() argument is ignored for text models): numBos = 1 exactly
 *   when the bundle's `app.prompt.add_bos` is true for a raw prompt; 0 for a rendered chat prompt, whose BOS is
 *   already in the template's text. A change re-creates the module.
 * - State persists between generate() calls: resetContext() before each independent prompt.
 * - seqLen counts prompt + new tokens (capped by the .pte's max context): see [generate].
 * - echo = false, or the prompt is echoed to onResult.
 * - The JNI hands over text only when it is valid UTF-8 (it buffers partial characters), and passes the EOS token's
 *   text before stopping: stop strings are stripped by core's StopStringFilter.
 */
class ExecuTorchEngine : Engine {
    override val runtime = "executorch"

    private var module: LlmModule? = null
    private var modulePath = ""
    private var tokenizerPath = ""
    private var numBos = -1
    /** The .pte's `get_max_context_len` (else `get_max_seq_len`) as the manifest records it; null when not given. */
    var maxContext: Int? = null
        private set

    /** The last run's stats JSON from LlmCallback.onStats (prompt_tokens, generated_tokens, ...), if any. */
    @Volatile var lastStats: JSONObject? = null
        private set

    override fun load(bundle: Bundle, artifact: Artifact) {
        if (artifact.runtime != runtime) throw BundleException("${artifact.name} is for ${artifact.runtime}, not $runtime", "pick the engine with Engines.forArtifact")
        modulePath = artifact.loadPath.path
        tokenizerPath = artifact.tokenizer.path
        val meta = artifact.json.optJSONObject("metadata")
        maxContext = meta?.let { (it.opt("get_max_context_len") ?: it.opt("get_max_seq_len")) as? Number }?.toInt()
        open(if (bundle.settingsFor(artifact).addBos) 1 else 0)
    }

    private fun open(bos: Int) {
        module?.close()
        module = null
        val m = try {
            LlmModule(LlmModule.MODEL_TYPE_TEXT, modulePath, tokenizerPath, 0.0f, null as String?, bos, 0)
        } catch (e: Exception) {
            throw BundleException("ExecuTorch could not open $modulePath: ${e.message}", "check the runtime version (executorch-android) against the bundle's load.runtime_version")
        }
        val rc: Any? = try { m.load() } catch (e: Exception) {
            m.close()
            throw BundleException("ExecuTorch failed to load $modulePath: ${e.message}", "re-export the bundle, or use an executorch-android at least as new as the exporter")
        }
        if (rc is Int && rc != 0) {   // older Java API returned a status instead of throwing
            m.close()
            throw BundleException("ExecuTorch failed to load $modulePath (status $rc)", "re-export the bundle, or update executorch-android")
        }
        module = m
        numBos = bos
    }

    /**
     * One independent completion: resetContext(), then generate(prompt, seqLen, echo = false) with [temperature]
     * (0 = greedy) and [bos] BOS tokens. [onPiece] gets each text piece as the runtime hands it over (EOS text
     * included); returning false from it stops generation. Returns the runtime's stats JSON (or null).
     */
    fun complete(prompt: String, bos: Int, seqLen: Int, temperature: Float, onPiece: (String) -> Boolean): JSONObject? {
        if (bos != numBos) open(bos)
        val m = module ?: throw IllegalStateException("load() the engine first")
        m.resetContext()
        lastStats = null
        val cb = object : LlmCallback {
            override fun onResult(result: String) {
                if (!onPiece(result)) m.stop()
            }

            override fun onStats(stats: String) {
                lastStats = runCatching { JSONObject(stats) }.getOrNull()
            }
        }
        val rc: Any? = m.generate(prompt, seqLen, cb, false, temperature, bos, 0)
        if (rc is Int && rc != 0) throw RuntimeException("ExecuTorch generate failed (status $rc)")
        return lastStats
    }

    /**
     * [prompt] is tokenized by the runtime, so its token count is not known before the call; seqLen (prompt + new
     * tokens) is set to an upper bound (UTF-8 bytes of the prompt + BOS: a BPE or byte-fallback token spans at least
     * one byte) plus max_new_tokens, capped by the .pte's context, and generation is stopped after max_new_tokens
     * pieces. `do_sample: false` (greedy defaults) runs at temperature 0: ExecuTorch's only sampling knob.
     */
    override fun generate(prompt: String, settings: GenerationSettings, onText: (String) -> Unit): GenerationStats {
        val bos = if (settings.addBos) 1 else 0
        val maxNew = settings.maxNewTokens ?: 64
        val bound = prompt.toByteArray(Charsets.UTF_8).size + bos + maxNew
        val seqLen = maxContext?.let { minOf(it, bound) } ?: bound
        val filter = settings.stopFilter()
        val t0 = System.nanoTime()
        var tFirst = -1L
        var pieces = 0
        val stats = complete(prompt, bos, seqLen, temperatureFor(settings)) { piece ->
            pieces++
            val shown = filter.push(piece)
            if (shown.isNotEmpty()) {
                if (tFirst < 0) tFirst = System.nanoTime()
                onText(shown)
            }
            !filter.stopped && pieces < maxNew
        }
        val tail = filter.finish()
        if (tail.isNotEmpty()) {
            if (tFirst < 0) tFirst = System.nanoTime()
            onText(tail)
        }
        val tEnd = System.nanoTime()
        val tokens = stats?.optInt("generated_tokens", -1)?.takeIf { it >= 0 } ?: (pieces - if (filter.stopped) 1 else 0)
        return stats(t0, tFirst, tEnd, tokens)
    }

    override fun stop() {
        module?.stop()
    }

    override fun close() {
        module?.close()
        module = null
        numBos = -1
    }

    companion object {
        fun temperatureFor(settings: GenerationSettings): Float {
            val doSample = (settings.values["do_sample"] ?: settings.ignored["do_sample"]) as? Boolean
            if (doSample == false) return 0f
            return (settings.temperature ?: 1.0).toFloat()
        }
    }
}

/** TTFT and decode rate from nanosecond timestamps ([first] < 0: nothing was shown). */
internal fun stats(t0: Long, first: Long, end: Long, tokens: Int): GenerationStats {
    val ttft = if (first < 0) (end - t0) / 1e6 else (first - t0) / 1e6
    val decodeS = if (first < 0) 0.0 else (end - first) / 1e9
    val rate = if (tokens > 1 && decodeS > 0) (tokens - 1) / decodeS else 0.0
    return GenerationStats(ttftMs = ttft, decodeTokPerS = rate, tokens = tokens)
}
