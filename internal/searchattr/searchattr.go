// Package searchattr names the custom search attributes every kafkasync workflow carries, so that
// jobs can be found in the Temporal Web UI and with `temporal workflow list --query`, e.g.
//
//	temporal workflow list --query 'JobStatus="DEAD_LETTERED" AND RemoteHost="sftp.example.com"'
//
// `kafkasync dev` registers them on its Temporal server; `kafkasync setup-temporal` on a cluster.
package searchattr

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// The keys.
var (
	JobID      = temporal.NewSearchAttributeKeyKeyword("JobID")
	FileName   = temporal.NewSearchAttributeKeyKeyword("FileName")
	RemoteHost = temporal.NewSearchAttributeKeyKeyword("RemoteHost")
	FileSize   = temporal.NewSearchAttributeKeyInt64("FileSize")
	JobStatus  = temporal.NewSearchAttributeKeyKeyword("JobStatus")
	Source     = temporal.NewSearchAttributeKeyKeyword("Source")
)

// All maps each attribute to its type, for registration.
var All = map[string]enumspb.IndexedValueType{
	JobID.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	FileName.GetName():   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	RemoteHost.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	FileSize.GetName():   enumspb.INDEXED_VALUE_TYPE_INT,
	JobStatus.GetName():  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	Source.GetName():     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
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

// Register adds every attribute of All missing from namespace: what `kafkasync setup-temporal`
// does. Running it again changes nothing.
func Register(ctx context.Context, c client.Client, namespace string) error {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes in %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range All {
		if got, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		} else if got != typ {
			return fmt.Errorf("search attribute %s in %s is %s, kafkasync needs %s", name, namespace, got, typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register search attributes in %s: %w", namespace, err)
	}
	return nil
}
