import Foundation
import PSPosix
import Synchronization  // Atomic

/// A small fixed pool of threads that runs the per-shard parts of one request at once, so that one client's
/// multi-shard `exchange` uses more than one core on the server.
///
/// The requesting thread queues a batch (one index per shard), claims indices itself alongside the helpers,
/// and returns only when every index has run; helpers sleep on the queue's condition when there is no batch.
/// Every hand-over goes through a `LockedValue`, which ThreadSanitizer sees.
final class ShardWorkers: Sendable {
    /// One request's work: `body.run(i)` for every `i` in `0..<count`, each index claimed once.
    private final class Batch: Sendable {
        let count: Int
        let body: Body
        let next = Atomic<Int>(0)
        let finished = LockedValue<Int>(0)

        init(count: Int, body: Body) {
            self.count = count
            self.body = body
        }

        /// Claims and runs indices until none is left.
        func work() {
            while true {
                let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard index < count else { return }
                body.run(index)
                finished.withLockAndBroadcast { $0 += 1 }
            }
        }
    }

    /// The per-index closure.
    // @unchecked Sendable: it captures the request's buffers and shards; `forEach` does not return before every
    // call has finished, and calls for different indices touch different shards and different slices.
    private struct Body: @unchecked Sendable {
        let run: (Int) -> Void
    }

    private struct Queue: Sendable {
        var batches: [Batch] = []
        var stopping = false
    }

    private let queue = LockedValue(Queue())
    /// How many helper threads run beside the requesting thread once started.
    let helperCount: Int
    /// Whether `start()` ran (until then `forEach` runs everything on the calling thread).
    private let started = Atomic<Bool>(false)

    /// A pool of `helpers` threads, started by `start()` (none: `forEach` runs everything on the calling thread).
    init(helpers: Int) {
        helperCount = max(helpers, 0)
    }

    /// Starts the helper threads. Called from `ParameterServer.start()`, after `psserver` has blocked the
    /// termination signals, so that the helpers inherit that mask and never take a SIGTERM themselves.
    func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for index in 0..<helperCount {
            let thread = Thread { [self] in helperLoop() }
            thread.name = "psserver-shards-\(index)"
            thread.start()
        }
    }

    /// Below this many elements of work per index a request's shards run one after another on the requesting
    /// thread: waking a helper (a futex wake and a context switch, tens of microseconds on a virtual machine) costs
    /// more than copying or updating a few hundred kilobytes. A 407 KB model over 4 shards (the mlp:128 jobs of
    /// `psbench train`) runs inline: 2 workers x 64, two epochs, 3.4-3.7K server context switches instead of 8.9-9.0K.
    static let inlineBelowElementsPerIndex = 1 << 16

    /// Runs `body(i)` for every `i` in `0..<count`, on this thread and the helpers at once; returns when all ran.
    /// `elements` is the work's size in floats: a request whose share per index is small runs on this thread alone.
    func forEach(_ count: Int, elements: Int = .max, _ body: @escaping (Int) -> Void) {
        guard !runsInline(count, elements: elements) else {
            for index in 0..<count { body(index) }
            return
        }
        let batch = Batch(count: count, body: Body(run: body))
        queue.withLockAndBroadcast { $0.batches.append(batch) }
        batch.work()
        // No deadline on purpose: what is left runs on a helper now (a shard lock and arithmetic, no I/O), and it
        // writes into buffers this caller lent; returning before it finished would hand them back still in use.
        batch.finished.wait(until: nil, while: { $0 < count })
        queue.withLock { $0.batches.removeAll { $0 === batch } }
    }

    /// Whether `forEach(count, elements:)` runs every index on the calling thread, one after another.
    func runsInline(_ count: Int, elements: Int) -> Bool {
        count <= 1 || helperCount == 0 || elements / count < Self.inlineBelowElementsPerIndex
            || !started.load(ordering: .acquiring)
    }

    /// Lets the helpers exit once they are idle.
    func stop() {
        queue.withLockAndBroadcast { $0.stopping = true }
    }

    private func helperLoop() {
        while true {
            // An idle helper sleeps until work or `stop` arrives; there is nothing to time out.
            let batch: Batch? = queue.wait(until: nil, while: { $0.batches.isEmpty && !$0.stopping }) { queue, _ in
                queue.stopping ? nil : queue.batches.first
            }
            guard let batch else { return }
            batch.work()
            // Every index is claimed: nobody needs to find this batch in the queue any more.
            queue.withLock { $0.batches.removeAll { $0 === batch } }
        }
    }
}
