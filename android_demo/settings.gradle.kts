// edgeslm Android demo: `core` (pure Kotlin, bundle contract, unit-tested on the JVM) and `app` (the Activity and
// the two runtime engines). Open this folder in Android Studio.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "edgeslm-android-demo"
include(":core", ":app")
