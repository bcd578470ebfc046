import Foundation
import PSCLI
import PSPosix

/// `psctl demo`: a preset of `psctl run` (Launcher) on the bundled or installed data, cleaned up on every exit path.
enum Demo {
    static let fashionDirectory = "/usr/share/datasets/fashion-mnist"

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let workers = try arguments.required("workers", as: Int.self)
        guard (1...16).contains(workers) else { throw UsageError("--workers must be between 1 and 16") }
        let data: String
        if let given = arguments.string("data") {
            data = given
        } else if FileManager.default.fileExists(atPath: fashionDirectory + "/train-images-idx3-ubyte.gz") {
            data = "fashion-mnist"
        } else {
            data = "digits"
            Launcher.say(
                "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); "
                    + "training on the bundled digits data set instead.")
        }
        let epochs =
            try arguments.value("epochs", as: Int.self, in: 1...Int(UInt32.max)) ?? (data == "fashion-mnist" ? 10 : 20)
        let directory = try Launcher.makeDirectory(arguments.string("directory"), prefix: "swiftps-demo")
        let metricsPath = directory + "/metrics.jsonl"
        let model = arguments.string("model") ?? "mlp:128"
        Launcher.say("Starting psserver (\(data), \(model), \(workers) workers, \(epochs) epochs)")
        let outcome = try Launcher.launchJob(
            serverFlags: [
                "--shards", "4", "--model", model, "--data", data, "--epochs", "\(epochs)", "--batch", "64", "--mode",
                arguments.string("mode") ?? "bsp", "--lr", "0.1", "--checkpoint-dir", directory + "/ckpt",
                "--metrics-out", metricsPath,
            ],
            workers: workers, workerFlags: [], directory: directory, timeout: 86_400,
            echoServer: Launcher.isNotableServerLine, echoWorker: { rank, _ in rank == 0 },
            onListening: { port in Launcher.say("psserver listening on 127.0.0.1:\(port); starting \(workers) workers")
            })
        guard outcome.serverCode == 0, outcome.workerCodes.allSatisfy({ $0 == 0 }) else {
            let reason = outcome.serverLastError.map { ": \($0)" } ?? ""
            throw CtlError("the demo failed (server exit \(outcome.serverCode))\(reason); logs in \(directory)")
        }
        let accuracy = finalAccuracy(metricsPath: metricsPath)
        Launcher.say(
            "Done: final test accuracy \(accuracy.map { String(format: "%.4f", $0) } ?? "unknown"); "
                + "weights in \(directory)/ckpt/final, metrics in \(metricsPath)")
        return 0
    }

    static func finalAccuracy(metricsPath: String) -> Double? {
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return nil }
        var accuracy: Double? = nil
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["type"] as? String == "epoch"
            else { continue }
            accuracy = object["test_accuracy"] as? Double
        }
        return accuracy
    }
}
