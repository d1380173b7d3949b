package vcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/manifests/virtualcluster"
)

// DNSObjects are the tenant DNS server's objects
// (manifests/virtualcluster/dns), its container's image replaced by image
// when set.
func DNSObjects(image string) ([]*unstructured.Unstructured, error) {
	decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(virtualcluster.CoreDNS), 4096)
	var objects []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); errors.Is(err, io.EOF) {
			return objects, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding the DNS server's manifests: %w", err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("decoding the DNS server's manifests: %w", err)
		}
		if image != "" && obj.GetKind() == "Deployment" {
			containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				c.(map[string]any)["image"] = image
			}
			if err := unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers"); err != nil {
				return nil, err
			}
		}
		objects = append(objects, obj)
	}
}

// InstallDNS applies the tenant DNS server into the virtual cluster and
// waits until its Deployment is available.
func InstallDNS(ctx context.Context, virtual *rest.Config, image string) error {
	c, err := client.New(virtual, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	objects, err := DNSObjects(image)
	if err != nil {
		return err
	}
	var deployment *appsv1.Deployment
	for _, obj := range objects {
		if err := apply(ctx, c, obj); err != nil {
			return fmt.Errorf("in the virtual cluster: %w", err)
		}
		if obj.GetKind() == "Deployment" {
			deployment = &appsv1.Deployment{}
			deployment.Name, deployment.Namespace = obj.GetName(), obj.GetNamespace()
		}
	}
	if deployment == nil {
		return errors.New("the DNS server's manifests hold no Deployment")
	}
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(deployment), deployment); err != nil {
			return false, nil //nolint:nilerr // keep waiting; the status says why at the end.
		}
		return deployment.Status.AvailableReplicas > 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the virtual cluster's DNS server (kube-system/coredns available; status %+v): %w", deployment.Status, err)
	}
	return nil
}
