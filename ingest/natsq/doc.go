// Package natsq is the scale-out queue on an external NATS JetStream
// cluster: any number of vigil replicas publish to it (the webhook is
// stateless), and each partition of the events is read by one replica at a
// time, so the window state of a key lives in one replica.
//
// Layout on the NATS account:
//
//   - stream VIGIL_EVENTS, Replicas copies (3 by default): events are
//     published on vigil.events.k.<token>, where token is a hash of the
//     event's partition key (user.username by default). The stream's
//     subject transform stores them on vigil.events.p.<n>.<token> with
//     n = partition(Partitions, token), so one key always lands in one
//     partition. Message bodies are the frames of ingest/jetstream (several
//     events of one cluster and one token, S2-compressed when that helps).
//   - one durable consumer per partition, detect-<n>, with the pinned-client
//     priority policy: of the replicas pulling from it, the server delivers
//     to one (the pinned one) and moves the pin to another when the pinned
//     one has not pulled for PinnedTTL.
//   - stream VIGIL_EVENTS_DEADLETTER (vigil.events.deadletter): items the
//     webhook refused, as in the embedded queue.
//   - key-value bucket vigil_alerts: fingerprints of alerts sent, shared by
//     the replicas (SentSet).
//   - object store vigil_windows: the window state each partition's owner
//     saved last (Snapshots).
//   - NATS service vigil-VIGIL_EVENTS: each replica registers itself (no
//     endpoint, metadata member=NAME), so that every replica sees the live
//     ones with a $SRV.PING.
//
// Which replica pulls which partition: every replica computes the owner of
// each partition by rendezvous hashing over the live members it sees, and
// pulls only its own. Exclusivity does not depend on the replicas agreeing:
// the server pins one puller per partition. A replica that dies stops
// pulling and answering; the others see it gone and start pulling its
// partitions, and the server hands them over once its pin expires.
package natsq
