import PSClient
import PSWire

extension Worker {
    /// Checks a welcome before the worker sizes a buffer, a loop or a division by any of its counts, and returns
    /// its config; a nonsensical one closes the connection and ends the worker with the field named.
    ///
    /// On a rejoin `previous` is the first welcome: the worker keeps the data order it built from that one, so the
    /// job and the tensors must not have changed. The shard count may (a server restored with another
    /// `--shards`): the worker then takes the new layout from this welcome.
    @discardableResult
    func checkWelcome(_ client: ParameterClient, previous: WelcomeConfig? = nil) throws(WorkerError) -> WelcomeConfig {
        let config = client.config
        do {
            try config.validate(rank: client.rank)
        } catch {
            client.close()
            throw WorkerError("\(error)")
        }
        if let previous {
            guard config.job == previous.job, config.tensors == previous.tensors else {
                client.close()
                throw WorkerError(
                    "invalid welcome from the server: the job or its tensors changed while this worker reconnected")
            }
        }
        return config
    }
}
