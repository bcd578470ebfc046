/// Anything that loads a training set and, optionally, a test set: the way a user's own loader plugs into a worker.
///
/// `DataSource` (every `--data` spelling) is one. A worker given a provider trains on what it loads instead of the
/// job's `--data`; the server still checks that the training set has the row and feature counts the job was
/// planned with, so every worker sees the same rows in the same order.
///
/// ```swift
/// struct MyLoader: DataProvider {
///     func loadTrain() throws -> Dataset {
///         Dataset(name: "mine", featureCount: 2, features: [0, 1, 1, 0], labels: [1, 1], classCount: 2)
///     }
///     func loadTest() throws -> Dataset? { nil }
/// }
/// let worker = Worker(options: options, data: MyLoader()) { context in MyModel(context) }
/// ```
public protocol DataProvider: Sendable, CustomStringConvertible {
    /// The training rows, in the order the job's data order indexes them.
    func loadTrain() throws -> Dataset
    /// The held-out rows the worker evaluates on at the end of every epoch, or nil.
    func loadTest() throws -> Dataset?
}

extension DataProvider {
    /// The provider's type name.
    public var description: String { "\(Self.self)" }
}

extension DataSource: DataProvider {}
