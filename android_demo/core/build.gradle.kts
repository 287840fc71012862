// Pure Kotlin (no android.*): the bundle contract of docs/apps.md. Unit tests read a real bundle:
//   gradle :core:test -Pedgeslm.bundle=/path/to/bundle     (or EDGESLM_BUNDLE=/path/to/bundle)
// The same sources compile and run without Gradle: scripts/test-core.sh BUNDLE.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    kotlin("jvm")
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    // org.json as Android implements it (Android's own sources, the same code as Debian's libandroid-json-java that
    // scripts/test-core.sh uses). compileOnly: on a device the platform provides org.json.
    compileOnly("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    val bundle = providers.gradleProperty("edgeslm.bundle").orElse(providers.environmentVariable("EDGESLM_BUNDLE"))
    val path = bundle.orNull
    if (path != null) {
        systemProperty("edgeslm.bundle", file(path).absolutePath)
        inputs.dir(path).withPropertyName("bundle")
    }
    doFirst {
        if (path == null) throw GradleException(
            "core tests read a bundle: pass -Pedgeslm.bundle=DIR (or EDGESLM_BUNDLE=DIR), a folder written by " +
                "`edgeslm export demo -o DIR --target android --no-bench`")
    }
    testLogging { events("failed"); exceptionFormat = org.gradle.api.tasks.testing.logging.TestExceptionFormat.FULL }
}
