package activities

import "testing"

// A single PUT is judged by its response: an MD5 ETag must be the job's, any other ETag (a
// server encrypting with KMS) says nothing about the bytes and is kept as it is.
func TestCheckPutJudgesTheETag(t *testing.T) {
	const sum = "0cc175b9c0f1b6a831c399e269772661"
	in := UploadInput{Bucket: "b", Key: "k", MD5: sum, Size: 1}
	for _, c := range []struct {
		etag string
		ok   bool
	}{{`"` + sum + `"`, true}, {`"92eb5ffee6ae2fec3ad71c777531578f"`, false}, {`"kms-encrypted-opaque-etag"`, true}, {"", true}} {
		var res UploadResult
		err := checkPut(in, c.etag, "v1", &res)
		if (err == nil) != c.ok {
			t.Errorf("ETag %s: %v", c.etag, err)
		}
		if res.ObjectMD5 != sum || res.ObjectSize != 1 || res.ETag != c.etag || res.VersionID != "v1" {
			t.Errorf("ETag %s: result %+v", c.etag, res)
		}
	}
}
