package dev.edgeslm.core

/** Timing of one generate() call, as the app shows it. */
data class GenerationStats(
    /** Time to first token: from the call to the first text handed to onText, in milliseconds. */
    val ttftMs: Double,
    /** Generated tokens per second after the first one. */
    val decodeTokPerS: Double,
    /** Tokens generated (EOS excluded). */
    val tokens: Int,
)

/**
 * What an app-side runtime wrapper implements (ExecuTorch LlmModule, onnxruntime-genai). The app picks the artifact
 * with [Bundle.choose], checks it with [Bundle.verify], then loads it into the engine whose [runtime] matches.
 */
interface Engine : AutoCloseable {
    /** The `load.runtime` value this engine runs: executorch | onnxruntime-genai | coreml. */
    val runtime: String

    /** Loads [artifact] of [bundle] (artifact.loadPath, artifact.tokenizer). Throws BundleException on failure. */
    fun load(bundle: Bundle, artifact: Artifact)

    /**
     * Generates from an already rendered [prompt] (see [ChatTemplate.render]); blocking, call off the UI thread.
     * [onText] receives complete characters only, stop strings removed.
     */
    fun generate(prompt: String, settings: GenerationSettings, onText: (String) -> Unit): GenerationStats

    /** Stops a generate() running on another thread, if the runtime can. */
    fun stop() {}

    override fun close()
}
