import KafkaClient

/// A message of the jobs topic with this value, at `offset` of `partition`.
func jobMessage(_ offset: Int, partition: Int32, value: String) -> KafkaMessage {
    KafkaMessage(
        id: KafkaMessageID(topic: "jobs", partition: partition, offset: Int64(offset)),
        key: nil, value: Array(value.utf8), headers: [], timestamp: nil
    )
}
