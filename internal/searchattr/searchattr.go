// Package searchattr names the custom search attributes every kafkasync workflow carries, so that
// jobs can be found in the Temporal Web UI and with `temporal workflow list --query`, e.g.
//
//	temporal workflow list --query 'JobStatus="DEAD_LETTERED" AND RemoteHost="sftp.example.com"'
//
// `kafkasync dev` registers them on its Temporal dev server; `kafkasync setup-temporal` on a cluster.
package searchattr

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// The keys.
var (
	JobID      = temporal.NewSearchAttributeKeyKeyword("JobID")
	FileName   = temporal.NewSearchAttributeKeyKeyword("FileName")
	RemoteHost = temporal.NewSearchAttributeKeyKeyword("RemoteHost")
	FileSize   = temporal.NewSearchAttributeKeyInt64("FileSize")
	JobStatus  = temporal.NewSearchAttributeKeyKeyword("JobStatus")
)

// All maps each attribute to its type, for registration.
var All = map[string]enumspb.IndexedValueType{
	JobID.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	FileName.GetName():   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	RemoteHost.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	FileSize.GetName():   enumspb.INDEXED_VALUE_TYPE_INT,
	JobStatus.GetName():  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
}

// DevServerFlags are the `temporal server start-dev` flags that register All.
func DevServerFlags() []string {
	var out []string
	for name, t := range All {
		typ := "Keyword"
		if t == enumspb.INDEXED_VALUE_TYPE_INT {
			typ = "Int"
		}
		out = append(out, "--search-attribute", name+"="+typ)
	}
	return out
}
