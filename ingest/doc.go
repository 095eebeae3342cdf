// Package ingest owns the audit event as vigil sees it and the contract by
// which events reach detection: the typed Event and its fast Decoder, the
// Record and Batch that carry raw event bytes with an acknowledgement, and
// the Source interface that log files, the webhook and queues implement.
//
// Raw bytes travel between components; each consumer decodes them once with
// a reused Decoder. Only the fields rules read are extracted eagerly;
// requestObject and responseObject stay unparsed until a rule asks for them.
package ingest
