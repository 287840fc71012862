package dev.edgeslm.demo

import ai.onnxruntime.genai.Generator
import ai.onnxruntime.genai.GeneratorParams
import ai.onnxruntime.genai.Model
import ai.onnxruntime.genai.Tokenizer
import dev.edgeslm.core.Artifact
import dev.edgeslm.core.Bundle
import dev.edgeslm.core.BundleException
import dev.edgeslm.core.Engine
import dev.edgeslm.core.GenerationSettings
import dev.edgeslm.core.GenerationStats
import org.json.JSONObject
import java.io.File

/**
 * The ONNX artifact on onnxruntime-genai's Java API: `Model` on the `load.path` folder (genai_config.json, model.onnx,
 * its tokenizer), `Tokenizer`, `TokenizerStream` for incremental text, `GeneratorParams` from the settings this
 * runtime honours (manifest `app.honoured["onnxruntime-genai"]`), and a `Generator` loop one token at a time.
 */
class OrtGenaiEngine : Engine {
    override val runtime = "onnxruntime-genai"

    private var model: Model? = null
    private var tokenizer: Tokenizer? = null
    /** genai_config.json `model.context_length`: max_length is capped by it. */
    var contextLength: Int? = null
        private set
    @Volatile private var stopRequested = false

    override fun load(bundle: Bundle, artifact: Artifact) {
        if (artifact.runtime != runtime) throw BundleException("${artifact.name} is for ${artifact.runtime}, not $runtime", "pick the engine with Engines.forArtifact")
        close()
        val dir = artifact.loadPath
        if (!File(dir, "genai_config.json").isFile)
            throw BundleException("${dir.name}/genai_config.json is missing: load.path of ${artifact.name} must be the onnxruntime-genai model folder", "re-export the bundle")
        contextLength = runCatching {
            JSONObject(File(dir, "genai_config.json").readText()).getJSONObject("model").optInt("context_length", 0).takeIf { it > 0 }
        }.getOrNull()
        val m = try { Model(dir.path) } catch (e: Exception) {
            throw BundleException("onnxruntime-genai could not load ${dir.name}: ${e.message}",
                "use an onnxruntime-genai Android AAR at least as new as the bundle's load.runtime_version (${artifact.runtimeVersion})")
        }
        model = m
        tokenizer = Tokenizer(m)
    }

    /**
     * [prompt]'s token ids as the bundle's contract wants them: the text without added special tokens (a rendered chat
     * prompt already holds its BOS), then BOS first exactly when [addBos]. onnxruntime-genai's encode may add BOS
     * itself (tokenizer_config.json's add_bos_token); such an added BOS is removed first.
     */
    fun encode(prompt: String, addBos: Boolean, bosId: Int?, bosText: String?): IntArray {
        val tok = tokenizer ?: throw IllegalStateException("load() the engine first")
        var ids = tok.encode(prompt).use { it.getSequence(0) }
        if (bosId != null && ids.isNotEmpty() && ids[0] == bosId) {
            val inText = bosText != null && bosText.isNotEmpty() && prompt.startsWith(bosText)
            val added = if (inText) ids.size > 1 && ids[1] == bosId else true
            if (added) ids = ids.copyOfRange(1, ids.size)
        }
        if (addBos && bosId != null && (ids.isEmpty() || ids[0] != bosId)) ids = intArrayOf(bosId) + ids
        return ids
    }

    /**
     * Generates from [promptIds]: at most [maxNew] new tokens (max_length = prompt + maxNew, capped by the context),
     * with [settings]' honoured search options, or greedy when [greedy]. [onToken] gets each new token id and the
     * text TokenizerStream gives for it ("" while a character is incomplete); returning false stops.
     */
    fun generateIds(promptIds: IntArray, settings: GenerationSettings, maxNew: Int, greedy: Boolean,
                    onToken: (Int, String) -> Boolean) {
        val m = model ?: throw IllegalStateException("load() the engine first")
        val tok = tokenizer!!
        stopRequested = false
        var maxLength = promptIds.size + maxNew
        contextLength?.let { maxLength = minOf(maxLength, it) }
        GeneratorParams(m).use { p ->
            if (greedy) {
                p.setSearchOption("do_sample", false)
            } else {
                settings.doSample?.let { p.setSearchOption("do_sample", it) }
                settings.temperature?.let { p.setSearchOption("temperature", it) }
                settings.topP?.let { p.setSearchOption("top_p", it) }
                settings.topK?.let { p.setSearchOption("top_k", it.toDouble()) }
                settings.repetitionPenalty?.let { p.setSearchOption("repetition_penalty", it) }
            }
            p.setSearchOption("max_length", maxLength.toDouble())
            Generator(m, p).use { g ->
                tok.createStream().use { stream ->
                    g.appendTokens(promptIds)
                    while (!g.isDone && !stopRequested) {
                        g.generateNextToken()
                        val id = g.getLastTokenInSequence(0)
                        if (!onToken(id, stream.decode(id))) break
                    }
                }
            }
        }
    }

    override fun generate(prompt: String, settings: GenerationSettings, onText: (String) -> Unit): GenerationStats {
        val t0 = System.nanoTime()
        val ids = encode(prompt, settings.addBos, settings.bosId, settings.bos)
        val maxNew = settings.maxNewTokens ?: 64
        val filter = settings.stopFilter()
        val eos = settings.eosIds.toSet()
        var tFirst = -1L
        var tokens = 0
        generateIds(ids, settings, maxNew, greedy = false) { id, text ->
            if (id in eos) return@generateIds false
            tokens++
            val shown = filter.push(text)
            if (shown.isNotEmpty()) {
                if (tFirst < 0) tFirst = System.nanoTime()
                onText(shown)
            }
            !filter.stopped
        }
        val tail = filter.finish()
        if (tail.isNotEmpty()) {
            if (tFirst < 0) tFirst = System.nanoTime()
            onText(tail)
        }
        return stats(t0, tFirst, System.nanoTime(), tokens)
    }

    override fun stop() {
        stopRequested = true
    }

    override fun close() {
        tokenizer?.close()
        tokenizer = null
        model?.close()
        model = null
    }
}
