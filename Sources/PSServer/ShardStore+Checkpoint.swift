import PSCheckpoint
import PSWire

extension ShardStore {
    /// Restores a checkpoint's weights with each tensor file read straight into the new shards' storage and its
    /// CRC-32C verified in the same pass (`CheckpointReader.TensorStream`); the store changes only if every file
    /// verifies. On any difference from what the manifest lists it reads the checkpoint again the plain way
    /// (`CheckpointReader.load`), which throws the error naming the file, or installs what it finds.
    ///
    /// The tensors are the manifest's, in its order; `optimizerSlots` are the optimizer state by tensor and slot.
    public func installCheckpoint(
        directory: String, manifest: CheckpointManifest, optimizerSlots: [String: [String: [Float]]], version: UInt64
    ) throws {
        let tensors = manifest.tensors.map { TensorSpec(name: $0.name, shape: $0.shape, initializer: .zeros) }
        #if _endian(little)
            do {
                for entry in manifest.tensors where entry.shape.reduce(1, *) == 0 {
                    _ = try CheckpointReader.TensorStream(directory: directory, entry: entry)
                }
                var stream: (index: Int, reader: CheckpointReader.TensorStream)? = nil
                try install(
                    tensors: tensors, optimizerStep: manifest.optimizer.step, optimizerSlots: optimizerSlots,
                    version: version
                ) { pieces, weights in
                    for piece in pieces {
                        if stream?.index != piece.tensorIndex {
                            let entry = manifest.tensors[piece.tensorIndex]
                            stream = (
                                piece.tensorIndex, try CheckpointReader.TensorStream(directory: directory, entry: entry)
                            )
                        }
                        let destination = UnsafeMutableBufferPointer(rebasing: weights[piece.shardRange])
                        try stream?.reader.read(into: UnsafeMutableRawBufferPointer(destination))
                    }
                }
                return
            } catch {
                // Fall through: the plain read below reports exactly what is wrong.
            }
        #endif
        let loaded = try CheckpointReader.load(directory: directory)
        try install(
            tensors: tensors, values: loaded.tensors.mapValues(\.values), optimizerStep: manifest.optimizer.step,
            optimizerSlots: optimizerSlots, version: version)
    }
}
