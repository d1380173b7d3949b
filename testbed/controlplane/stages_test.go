package controlplane

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/podbridge/podbridge/translate"
)

// kwok finishes a virtual Job's host pods by their job-name label, which
// the host pod carries under its tenant key only.
func TestJobStageSelectsTenantJobLabel(t *testing.T) {
	want := `.metadata.labels["` + translate.TenantKey(batchv1.JobNameLabel) + `"]`
	if !strings.Contains(string(kwokStages), want) {
		t.Errorf("kwok-stages.yaml does not select host pods of Jobs by %s", want)
	}
}
