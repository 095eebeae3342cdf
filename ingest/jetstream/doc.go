// Package jetstream is the default ingest.Queue: a NATS JetStream server
// embedded in the vigil process, with file storage in the data directory.
//
// Layout in the store directory (the data dir's queue/):
//
//   - stream VIGIL_EVENTS (subject vigil.events): audit events, several per
//     message, framed as (uvarint length, de-duplication key, uvarint
//     length, event JSON) and split so no message exceeds the payload limit.
//     The body is S2-compressed (block format) when the Vigil-Encoding
//     header says "s2", which is the case unless compression saved nothing;
//     audit JSON shrinks about 8×. The Vigil-Cluster header names the
//     cluster. Messages stay for
//     Retention after they were written so that window state can be rebuilt
//     after a crash (Queue.Replay).
//   - consumer "detect" on it: durable, explicit acks. Its ack floor is the
//     point up to which detection has finished.
//   - stream VIGIL_EVENTS_DEADLETTER (subject vigil.events.deadletter): items the webhook
//     refused inside an otherwise valid request, with the reason in the
//     Vigil-Reason header.
//   - key-value bucket vigil_alerts (Fingerprints): the fingerprints of
//     alerts already sent, so that a restart never sends one twice.
//
// Durability: Publish returns only after the server stored the message. By
// default the server writes to the file system and syncs it every two
// minutes, which survives a crash of the process but not a power loss;
// Options.SyncAlways syncs every write, which survives power loss and costs
// throughput.
package jetstream
