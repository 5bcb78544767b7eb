// Package s3client builds the aws-sdk-go-v2 S3 client from the s3 config section.
package s3client

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kafkasync/kafkasync/internal/config"
)

// New returns an S3 client with static credentials; an empty endpoint means AWS itself.
func New(c config.S3) *s3.Client {
	var base *string
	if c.Endpoint != "" {
		base = aws.String(c.Endpoint)
	}
	access, secret := c.AccessKey, c.SecretKey.Reveal()
	return s3.New(s3.Options{
		BaseEndpoint: base,
		Region:       c.Region,
		UsePathStyle: c.PathStyle,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: access, SecretAccessKey: secret, Source: "kafkasync config"}, nil
		}),
	})
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
