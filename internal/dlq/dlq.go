// Package dlq names the headers of the dead-letter topic's messages, which the bridge and the
// workflows write and the dashboard, the replayer and operators read.
package dlq

// Every dead letter carries a reason and a stage. Messages refused by the bridge carry the
// original topic, partition and offset; jobs that failed in the workflow carry the workflow ID,
// the attempts and the job's source.
const (
	HeaderReason     = "reason"
	HeaderStage      = "stage"
	HeaderErrorType  = "error_type"
	HeaderAttempts   = "attempts"
	HeaderWorkflowID = "workflow_id"
	HeaderJobID      = "job_id"
	HeaderTopic      = "original_topic"
	HeaderPartition  = "original_partition"
	HeaderOffset     = "original_offset"
	HeaderSource     = "source"
)

// Headers of a dead letter that carries only the start of the refused message.
const (
	HeaderTruncated    = "truncated"       // "true"
	HeaderOriginalSize = "original_size"   // bytes of the whole value
	HeaderOriginalHash = "original_sha256" // hex SHA-256 of the whole value
)

// HeaderReplayedFrom marks a job message republished from the dead-letter topic: "topic/partition/offset".
const HeaderReplayedFrom = "replayed_from"
