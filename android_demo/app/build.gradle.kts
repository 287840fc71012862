// The Activity and the two engines on the upstream Android runtimes. Builds with the Android SDK only (Android Studio,
// or `gradle -p android_demo :app:assembleDebug` in CI); this repository's own CI cannot build it (no android.jar):
// there, scripts/check-resources.sh links the manifest and resources with aapt2 instead.
//
// Runtime versions (override with -P...):
//   edgeslm.executorchVersion  org.pytorch:executorch-android; keep >= the executorch that exported the .pte
//                              (pyproject.toml: 1.5.1). An older runtime may reject a newer .pte. Fallback: 1.3.1
//                              (ExecuTorchEngine needs >= 1.3.0: numBos constructor since 1.2.0, close() 1.3.0).
//   edgeslm.genaiVersion       onnxruntime-genai Android AAR; not on Maven Central: scripts/fetch-genai-aar.sh puts
//                              it at app/libs/onnxruntime-genai-android.aar (GitHub release asset, else the NuGet
//                              package's runtimes/android/native/onnxruntime-genai.aar).
//   edgeslm.ortVersion         com.microsoft.onnxruntime:onnxruntime-android: the genai AAR links libonnxruntime.so
//                              but its POM does not declare it. Same version as the exporter's onnxruntime.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

val executorchVersion = providers.gradleProperty("edgeslm.executorchVersion").getOrElse("1.5.1")
val ortVersion = providers.gradleProperty("edgeslm.ortVersion").getOrElse("1.31.1")
val genaiVersion = providers.gradleProperty("edgeslm.genaiVersion").getOrElse("0.18.0")
val genaiAar = file("libs/onnxruntime-genai-android.aar")   // scripts/fetch-genai-aar.sh $genaiVersion

android {
    namespace = "dev.edgeslm.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edgeslm.demo"
        minSdk = 26            // genai AAR needs 24, ExecuTorch 23; 26 for java.nio.file on the device
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }   // the ABIs both runtime AARs ship
        // shown on the chat screen next to the version the bundle was checked with (load.runtime_version)
        buildConfigField("String", "EXECUTORCH_VERSION", "\"$executorchVersion\"")
        buildConfigField("String", "GENAI_VERSION", "\"$genaiVersion\"")
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    buildFeatures { buildConfig = true }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    packaging {
        jniLibs { useLegacyPackaging = true }
        // both AARs may carry the C++ runtime
        jniLibs.pickFirsts += listOf("**/libc++_shared.so", "**/libfbjni.so")
    }

    lint {
        abortOnError = true
        warningsAsErrors = false
        // /data/local/tmp/edgeslm is the documented device folder `edgeslm push` writes (not an SD card path)
        disable += listOf("SdCardPath", "GradleDependency", "NewerVersionAvailable", "OldTargetApi")
    }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    implementation(project(":core"))
    implementation("org.pytorch:executorch-android:$executorchVersion")
    implementation(files(genaiAar))
    implementation("com.microsoft.onnxruntime:onnxruntime-android:$ortVersion")

    androidTestImplementation("androidx.test:runner:1.6.2")
    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("junit:junit:4.13.2")
}

tasks.named("preBuild") {
    doFirst {
        if (!genaiAar.isFile) throw GradleException(
            "$genaiAar is missing: the onnxruntime-genai Android AAR is not on Maven Central. " +
                "Run android_demo/scripts/fetch-genai-aar.sh (downloads it for the version the exporter uses)")
    }
}
