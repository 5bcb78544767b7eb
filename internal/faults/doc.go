// Package faults is kafkasync's fault suite: each test runs the real stack on loopback, injects one
// fault (a killed process, a server taken down, a proxy that resets or stalls connections, hostile
// input, a full disk), and then balances the ledger: every job published is either an object in S3
// with the right MD5 or a message on the dead-letter topic, exactly once, with one SUCCEEDED audit
// row per archived job, one workflow per job, nothing left in staging and no open multipart upload.
package faults
