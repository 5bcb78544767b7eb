// Package s3client builds the aws-sdk-go-v2 S3 client from the s3 config section.
package s3client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kafkasync/kafkasync/internal/config"
)

// MetaMD5 is the object metadata key holding the file's MD5 (x-amz-meta-md5), set by the upload.
const MetaMD5 = "md5"

// New returns an S3 client with static credentials; an empty endpoint means AWS itself. With
// CAFile set, the endpoint's certificate must come from that CA (a private CA) instead of the
// system's roots.
func New(c config.S3) (*s3.Client, error) {
	var base *string
	if c.Endpoint != "" {
		base = aws.String(c.Endpoint)
	}
	var tc *tls.Config
	if c.CAFile != "" {
		var err error
		if tc, err = (config.TLS{Enable: true, CAFile: c.CAFile}).ClientConfig(); err != nil {
			return nil, fmt.Errorf("s3.ca_file: %w", err)
		}
	}
	// The client talks to one endpoint, with as many requests at once as a worker runs uploads:
	// the SDK's default keeps 10 idle connections per host, and many small files at once would
	// dial a new connection for most PUTs.
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = tr.MaxIdleConns
		if tc != nil {
			tr.TLSClientConfig = tc
		}
	})
	access, secret := c.AccessKey, c.SecretKey.Reveal()
	return s3.New(s3.Options{
		HTTPClient:         hc,
		BaseEndpoint:       base,
		EndpointResolverV2: newEndpointMemo(),
		Region:             c.Region,
		UsePathStyle:       c.PathStyle,
		// A checksum only where the upload asks for one (parts: CRC32); a single PUT carries the
		// verified MD5 as Content-MD5, and a second checksum would hash the bytes again.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: access, SecretAccessKey: secret, Source: "kafkasync config"}, nil
		}),
	}), nil
}

// EnsureBucket creates bucket unless it exists.
func EnsureBucket(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err == nil || errors.As(err, &owned) || errors.As(err, &exists) {
		return nil
	}
	return fmt.Errorf("create bucket %s: %w", bucket, err)
}
