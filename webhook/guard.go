package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/review"
)

// WorkerPods tells the worker guard which pods are Airflow workers, as
// the launching-worker resolution sees them (see workerOf).
type WorkerPods interface {
	// IsWorker says whether the pod of that namespace and name is a
	// worker; a pod that does not exist is not.
	IsWorker(ctx context.Context, namespace, name string) (bool, error)
	// Selects says whether a pod with these labels is a worker.
	Selects(podLabels map[string]string) bool
}

// GuardWorkers serves /guard-workers: it refuses exec and attach into a
// worker, and updates that change what a worker runs (an image, or an
// ephemeral container from kubectl debug). kpoguard trusts a worker's
// pod-bound token to place the task pods it creates, so whoever gets a
// shell in a worker, or runs an image of their own in it, could use that
// token. Exempt users and groups never get here: the chart's
// matchConditions let the API server skip them, even while kpoguard is
// down.
func (d *Deps) GuardWorkers() admission.Handler {
	return d.instrumented(hookGuardWorkers, d.guardWorkers)
}

func (d *Deps) guardWorkers(ctx context.Context, req admission.Request) (admission.Response, review.Decision) {
	if req.Resource.Group != "" || req.Resource.Resource != "pods" {
		return admission.Allowed("kpoguard guards only pods"), review.Allowed
	}
	if d.WorkerPods == nil {
		return admission.Errored(http.StatusInternalServerError, errNoWorkers), review.Error
	}
	switch req.Operation {
	case admissionv1.Connect:
		worker, err := d.WorkerPods.IsWorker(ctx, req.Namespace, req.Name)
		if err != nil {
			// Refused, not guessed: the API server could not be read
			// within --api-read-timeout, and a retry soon succeeds.
			return admission.Errored(http.StatusServiceUnavailable,
				fmt.Errorf("kpoguard could not tell whether pod %q is an Airflow worker, on which pods/%s is refused: %w; try again", req.Name, req.SubResource, err)), review.Error
		}
		if !worker {
			return admission.Allowed(""), review.Allowed
		}
		return admission.Denied(fmt.Sprintf("kpoguard refuses pods/%s on pod %q: %s; exec into a task pod instead, or ask a platform engineer",
			req.SubResource, req.Name, workerIdentity)), review.Denied
	case admissionv1.Update:
		var pod, old corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err)), review.Error
		}
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old pod: %w", err)), review.Error
		}
		// A pod that is a worker after the update, or was one before it,
		// as the webhook's objectSelector matches either.
		if !d.WorkerPods.Selects(old.Labels) && !d.WorkerPods.Selects(pod.Labels) {
			return admission.Allowed(""), review.Allowed
		}
		changes := imageChanges(&old, &pod)
		if len(changes) == 0 {
			return admission.Allowed(""), review.Allowed
		}
		return admission.Denied(fmt.Sprintf("kpoguard refuses changing what pod %q runs (%s): %s; change the image where the workers are deployed (their Deployment or StatefulSet), or ask a platform engineer",
			req.Name, strings.Join(changes, ", "), workerIdentity)), review.Denied
	}
	return admission.Allowed("kpoguard guards only connections to and updates of workers"), review.Allowed
}

// workerIdentity is why the guard refuses, in every message.
const workerIdentity = "it is an Airflow worker, an identity kpoguard trusts to place the task pods it launches, " +
	"and whoever runs a command or an image of their own in it can act as it with its service-account token"

// imageChanges lists each container, init container and ephemeral
// container whose image an update sets: changed, or added with the
// container (kubectl debug adds an ephemeral container, which mounts the
// pod's service-account token like any other).
func imageChanges(old, pod *corev1.Pod) []string {
	var out []string
	for _, l := range []struct {
		field    string
		old, new []namedImage
	}{
		{"spec.containers", containerImages(old.Spec.Containers), containerImages(pod.Spec.Containers)},
		{"spec.initContainers", containerImages(old.Spec.InitContainers), containerImages(pod.Spec.InitContainers)},
		{"spec.ephemeralContainers", ephemeralImages(old.Spec.EphemeralContainers), ephemeralImages(pod.Spec.EphemeralContainers)},
	} {
		before := map[string]string{}
		for _, c := range l.old {
			before[c.name] = c.image
		}
		for i, c := range l.new {
			if image, ok := before[c.name]; !ok || image != c.image {
				out = append(out, fmt.Sprintf("container %q (%s[%d].image)", c.name, l.field, i))
			}
		}
	}
	return out
}

type namedImage struct{ name, image string }

func containerImages(cs []corev1.Container) []namedImage {
	out := make([]namedImage, len(cs))
	for i, c := range cs {
		out[i] = namedImage{c.Name, c.Image}
	}
	return out
}

func ephemeralImages(cs []corev1.EphemeralContainer) []namedImage {
	out := make([]namedImage, len(cs))
	for i, c := range cs {
		out[i] = namedImage{c.Name, c.Image}
	}
	return out
}
