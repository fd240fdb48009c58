package webhook

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Keychains are read once for a burst of pods, kept for TTL, and read
// again after it.
func TestPullSecretKeychainsReadOncePerTTL(t *testing.T) {
	client := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pull", Namespace: "ns"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example.com":{"auth":"dTpw"}}}`)},
	})
	var mu sync.Mutex
	gets := map[string]int{}
	client.PrependReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		gets[a.GetResource().Resource]++
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // a burst arrives while the first read is in flight
		return false, nil, nil
	})
	k := &PullSecretKeychains{Client: client, TTL: 50 * time.Millisecond}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}}}}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := k.For(context.Background(), pod); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if gets["secrets"] != 1 || gets["serviceaccounts"] != 1 {
		t.Fatalf("20 concurrent pods read %v, want one secret and one service account", gets)
	}
	if _, err := k.For(context.Background(), pod); err != nil || gets["secrets"] != 1 {
		t.Fatalf("within the TTL: err %v, reads %v", err, gets)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := k.For(context.Background(), pod); err != nil || gets["secrets"] != 2 {
		t.Errorf("after the TTL: err %v, reads %v, want a second secret read", err, gets)
	}
}
