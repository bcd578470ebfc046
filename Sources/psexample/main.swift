// psexample: a model SwiftPS does not ship, trained through the public worker API (the `SwiftPS` product).
//
// A small autoencoder squeezes each row through a ReLU bottleneck and reconstructs it; the loss is half the mean
// squared reconstruction error. Labels are ignored. Run a server that learns the model from its first worker,
// then two of these (README, "Your own model"):
//
//   psserver --model external --data digits --workers 2 --batch 32 --epochs 5 --lr 0.5 --port 7000
//   psexample --server 127.0.0.1:7000 --name a &  psexample --server 127.0.0.1:7000 --name b
import Foundation
import PSMath
import PSModel
import PSTraining

/// encoder `[inputs][code]` + ReLU, decoder `[code][inputs]`, loss `sum((y - x)^2) / (2 * rows * inputs)`.
final class Autoencoder: TrainableModel {
    let inputs: Int
    let code: Int
    let seed: UInt64
    private var hidden: [Float] = []  // [rows][code], after ReLU
    private var output: [Float] = []  // [rows][inputs]: the reconstruction, then its gradient
    private var hiddenGradient: [Float] = []
    private var ones: [Float] = []

    init(inputs: Int, code: Int, seed: UInt64) {
        (self.inputs, self.code, self.seed) = (inputs, code, seed)
    }

    var parameters: [ParameterSpec] {
        [
            ParameterSpec(name: "encoder.weight", shape: [inputs, code], initializer: .glorotUniform(seed: seed + 1)),
            ParameterSpec(name: "encoder.bias", shape: [code], initializer: .zeros),
            ParameterSpec(name: "decoder.weight", shape: [code, inputs], initializer: .glorotUniform(seed: seed + 2)),
            ParameterSpec(name: "decoder.bias", shape: [inputs], initializer: .zeros),
        ]
    }

    /// Fills `hidden` and `output` for the batch; returns the loss and leaves d(loss)/d(output) in `output`.
    private func forward(_ p: ParameterValues, _ batch: Batch) -> Double {
        let rows = batch.rows
        if hidden.count < rows * code {
            hidden = [Float](repeating: 0, count: rows * code)
            hiddenGradient = hidden
            output = [Float](repeating: 0, count: rows * inputs)
            ones = [Float](repeating: 1, count: rows)
        }
        let x = batch.features.baseAddress!
        for r in 0..<rows { BLAS.scopy(count: code, x: p[1].baseAddress!, y: &hidden[r * code]) }
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: rows, n: code, k: inputs, alpha: 1, a: x, lda: inputs,
            b: p[0].baseAddress!, ldb: code, beta: 1, c: &hidden, ldc: code)
        for i in 0..<(rows * code) where hidden[i] < 0 { hidden[i] = 0 }
        for r in 0..<rows { BLAS.scopy(count: inputs, x: p[3].baseAddress!, y: &output[r * inputs]) }
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: rows, n: inputs, k: code, alpha: 1, a: hidden, lda: code,
            b: p[2].baseAddress!, ldb: inputs, beta: 1, c: &output, ldc: inputs)
        var loss = 0.0
        let scale = 1 / Float(rows * inputs)
        for i in 0..<(rows * inputs) {
            let error = output[i] - x[i]
            loss += Double(error * error)
            output[i] = error * scale
        }
        return loss / Double(2 * rows * inputs)
    }

    func lossAndGradient(parameters p: ParameterValues, batch: Batch, gradient g: GradientValues) -> Double {
        let rows = batch.rows
        let loss = forward(p, batch)
        // decoder: dW = hᵀ · dy, db = column sums of dy; then dh = dy · Wᵀ through the ReLU.
        BLAS.sgemm(
            transposeA: true, transposeB: false, m: code, n: inputs, k: rows, alpha: 1, a: hidden, lda: code,
            b: output, ldb: inputs, beta: 0, c: g[2].baseAddress!, ldc: inputs)
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: 1, n: inputs, k: rows, alpha: 1, a: ones, lda: rows,
            b: output, ldb: inputs, beta: 0, c: g[3].baseAddress!, ldc: inputs)
        BLAS.sgemm(
            transposeA: false, transposeB: true, m: rows, n: code, k: inputs, alpha: 1, a: output, lda: inputs,
            b: p[2].baseAddress!, ldb: inputs, beta: 0, c: &hiddenGradient, ldc: code)
        for i in 0..<(rows * code) where hidden[i] <= 0 { hiddenGradient[i] = 0 }
        // encoder: dW = xᵀ · dh, db = column sums of dh.
        BLAS.sgemm(
            transposeA: true, transposeB: false, m: inputs, n: code, k: rows, alpha: 1,
            a: batch.features.baseAddress!, lda: inputs, b: hiddenGradient, ldb: code, beta: 0,
            c: g[0].baseAddress!, ldc: code)
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: 1, n: code, k: rows, alpha: 1, a: ones, lda: rows,
            b: hiddenGradient, ldb: code, beta: 0, c: g[1].baseAddress!, ldc: code)
        return loss
    }

    func evaluate(parameters: ParameterValues, batch: Batch) -> Evaluation? {
        Evaluation(loss: forward(parameters, batch))  // no classes, so no accuracy
    }
}

/// `--server HOST:PORT --name NAME`: one worker of the job, until the job ends.
func runExample() -> Int32 {
    var flags: [String: String] = [:]
    var arguments = CommandLine.arguments.dropFirst()
    while let flag = arguments.popFirst(), let value = arguments.popFirst() { flags[flag] = value }
    let address = (flags["--server"] ?? "127.0.0.1:7000").split(separator: ":")
    var options = WorkerOptions(name: flags["--name"] ?? "psexample-\(getpid())")
    options.host = address.first.map(String.init) ?? "127.0.0.1"
    options.port = address.count > 1 ? UInt16(address[1]) ?? 7000 : 7000
    let worker = Worker(options: options) { context in
        Autoencoder(inputs: context.featureCount, code: 16, seed: context.seed)
    }
    do {
        try worker.run()
        return 0
    } catch {
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        return 1
    }
}

exit(runExample())
