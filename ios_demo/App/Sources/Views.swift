import CoreML
import EdgeSLMCore
import SwiftUI
import UniformTypeIdentifiers

struct RootView: View {
    @EnvironmentObject var model: ChatModel

    var body: some View {
        NavigationStack {
            switch model.screen {
            case .library: LibraryView()
            case .refused(let folder, let error): RefusedView(folder: folder, error: error)
            case .chat: ChatView()
            }
        }
        .overlay {
            if let p = model.progress {
                VStack(spacing: 12) { ProgressView(); Text(p).font(.callout).multilineTextAlignment(.center) }
                    .padding(24).background(.regularMaterial, in: RoundedRectangle(cornerRadius: 12))
            }
        }
    }
}

/// Screen 1: the bundles in the app, Import (Files app folder picker), compute units for Core ML.
struct LibraryView: View {
    @EnvironmentObject var model: ChatModel
    @State private var importing = false

    var body: some View {
        List {
            Section {
                if model.rows.isEmpty {
                    Text("No bundles yet. Tap Import and pick a folder written by `edgeslm export --target ios`, or copy one into this app's Documents with Finder.")
                        .foregroundStyle(.secondary)
                }
                ForEach(model.rows) { row in
                    Button {
                        Task { await model.open(row.id) }
                    } label: {
                        VStack(alignment: .leading, spacing: 4) {
                            Text(row.name).font(.headline)
                            Text(row.summary).font(.subheadline)
                                .foregroundStyle(row.summary.hasPrefix("will be refused") ? .red : .secondary)
                            ForEach(row.artifacts, id: \.self) { Text($0).font(.caption).foregroundStyle(.secondary) }
                        }
                    }
                }
            } header: { Text("Bundles") }
            Section {
                Picker("Core ML compute units", selection: $model.computeUnits) {
                    Text("All (CPU, GPU, Neural Engine)").tag(MLComputeUnits.all)
                    Text("CPU and Neural Engine").tag(MLComputeUnits.cpuAndNeuralEngine)
                    Text("CPU and GPU").tag(MLComputeUnits.cpuAndGPU)
                    Text("CPU only").tag(MLComputeUnits.cpuOnly)
                }
            } footer: { Text("Used the next time a Core ML bundle is opened.") }
        }
        .navigationTitle("edgeslm")
        .toolbar {
            ToolbarItem(placement: .primaryAction) { Button("Import") { importing = true } }
            ToolbarItem(placement: .secondaryAction) { Button("Refresh") { model.refresh() } }
        }
        .fileImporter(isPresented: $importing, allowedContentTypes: [.folder]) { result in
            if case .success(let url) = result { model.importFolder(url) }
        }
        .onAppear { model.refresh() }
    }
}

/// Screen 2: why a bundle was refused, and what to do.
struct RefusedView: View {
    @EnvironmentObject var model: ChatModel
    let folder: String
    let error: BundleError

    var body: some View {
        ScrollView {
            VStack(alignment: .leading, spacing: 16) {
                Text("This bundle was refused").font(.title2).bold()
                Text(folder).font(.headline)
                Text(error.problem)
                Text("What to do: \(error.fix)").foregroundStyle(.secondary)
                Button("Back to the bundles") { model.screen = .library; model.refresh() }
            }
            .padding()
            .frame(maxWidth: .infinity, alignment: .leading)
            .background(Color.red.opacity(0.08), in: RoundedRectangle(cornerRadius: 12))
            .padding()
        }
        .navigationTitle("Refused")
    }
}

/// Screen 3: the conversation, streaming as whole characters; TTFT, tok/s, artifact and compute units on top.
struct ChatView: View {
    @EnvironmentObject var model: ChatModel
    @State private var input = ""

    var body: some View {
        VStack(spacing: 0) {
            VStack(alignment: .leading, spacing: 2) {
                Text(model.header).font(.caption).bold()
                Text(model.chatMode).font(.caption2)
                Text(model.settingsNote).font(.caption2).foregroundStyle(.secondary)
                if let s = model.stats {
                    Text(String(format: "TTFT %.0f ms · %.1f tok/s · %d tokens", s.ttftMs, s.decodeTokPerS, s.tokens))
                        .font(.caption.monospacedDigit())
                } else if model.generating {
                    Text("generating…").font(.caption)
                }
            }
            .frame(maxWidth: .infinity, alignment: .leading)
            .padding(8)
            .background(.thinMaterial)
            ScrollViewReader { proxy in
                ScrollView {
                    LazyVStack(alignment: .leading, spacing: 8) {
                        ForEach(model.lines) { line in
                            Text(line.text.isEmpty && line.role == "assistant" ? "…" : line.text)
                                .padding(10)
                                .background(color(line.role), in: RoundedRectangle(cornerRadius: 10))
                                .frame(maxWidth: .infinity, alignment: line.role == "user" ? .trailing : .leading)
                                .id(line.id)
                        }
                    }
                    .padding()
                }
                .onChange(of: model.lines.last?.text) { _, _ in
                    if let last = model.lines.last { proxy.scrollTo(last.id, anchor: .bottom) }
                }
            }
            HStack {
                TextField("Message", text: $input, axis: .vertical).textFieldStyle(.roundedBorder)
                if model.generating {
                    Button("Stop") { model.stop() }
                } else {
                    Button("Send") { model.send(input); input = "" }.disabled(input.isEmpty)
                }
            }
            .padding(8)
        }
        .navigationTitle(model.bundle?.dir.lastPathComponent ?? "Chat")
        .toolbar {
            ToolbarItem(placement: .cancellationAction) {
                Button("Bundles") { model.close(); model.screen = .library; model.refresh() }
            }
        }
    }

    private func color(_ role: String) -> Color {
        switch role {
        case "user": return .blue.opacity(0.15)
        case "error": return .red.opacity(0.15)
        default: return .gray.opacity(0.12)
        }
    }
}
