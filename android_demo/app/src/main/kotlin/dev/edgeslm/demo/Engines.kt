package dev.edgeslm.demo

import dev.edgeslm.core.Artifact
import dev.edgeslm.core.Bundle
import dev.edgeslm.core.Engine

/** The runtimes this app links, by `load.runtime`; [Bundle.choose] picks the first artifact among them. */
object Engines {
    val RUNTIMES: Set<String> = setOf("executorch", "onnxruntime-genai")

    fun forArtifact(artifact: Artifact): Engine = when (artifact.runtime) {
        "executorch" -> ExecuTorchEngine()
        "onnxruntime-genai" -> OrtGenaiEngine()
        else -> throw IllegalArgumentException("no engine for runtime ${artifact.runtime}")
    }

    /** Opens [bundle]'s chosen artifact: choose (refuses failed bundles/artifacts), verify (sha256 of every file), load. */
    fun open(bundle: Bundle): Pair<Artifact, Engine> {
        val artifact = bundle.choose(RUNTIMES)
        bundle.verify(artifact)
        val engine = forArtifact(artifact)
        try {
            engine.load(bundle, artifact)
        } catch (e: Throwable) {
            engine.close()
            throw e
        }
        return artifact to engine
    }
}
