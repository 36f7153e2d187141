//! The KServe variant: one InferenceService whose Triton predictor serves
//! the same repository with the same backend installer. KServe runs the
//! pods, Services and autoscaling itself, so none of the other objects go
//! with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, LocalObjectReference, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::objects::metadata;
use super::options::{K8sOptions, ModelRepository, Replicas};
use super::pod;

pub const INFERENCE_SERVICE_API_VERSION: &str = "serving.kserve.io/v1beta1";
pub const INFERENCE_SERVICE_KIND: &str = "InferenceService";

/// KServe's InferenceService (CRD `inferenceservices.serving.kserve.io`,
/// version v1beta1), with only the fields written here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceService {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: InferenceServiceSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceServiceSpec {
    pub predictor: PredictorSpec,
}

/// KServe's PredictorSpec: its replica bounds, the Triton predictor, and
/// the PodSpec fields it inlines (init containers, volumes, scheduling).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictorSpec {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub triton: TritonPredictor,
    pub init_containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

/// KServe's TritonSpec: where the model repository is and which Triton
/// image tag runs it, plus the Container fields KServe merges into its
/// Triton runtime's container (args are appended to the runtime's own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TritonPredictor {
    pub storage_uri: String,
    pub runtime_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    pub resources: ResourceRequirements,
    pub volume_mounts: Vec<VolumeMount>,
}

/// The repository as KServe's storage initializer names it.
fn storage_uri(repository: &ModelRepository) -> String {
    match repository {
        ModelRepository::Claim { claim, sub_path } => match sub_path {
            Some(path) => format!("pvc://{claim}/{path}"),
            None => format!("pvc://{claim}"),
        },
        ModelRepository::ObjectStorage(url) => url.clone(),
    }
}

pub fn inference_service(options: &K8sOptions) -> InferenceService {
    let (min_replicas, max_replicas) = match options.replicas {
        Replicas::Fixed(count) => (count, count),
        Replicas::Autoscaled { min, max, .. } => (min, max),
    };
    InferenceService {
        api_version: INFERENCE_SERVICE_API_VERSION.into(),
        kind: INFERENCE_SERVICE_KIND.into(),
        metadata: metadata(options, &options.name),
        spec: InferenceServiceSpec {
            predictor: PredictorSpec {
                min_replicas: i32::from(min_replicas),
                max_replicas: i32::from(max_replicas),
                triton: TritonPredictor {
                    storage_uri: storage_uri(&options.repository),
                    runtime_version: options.triton_tag.clone(),
                    args: options.triton_args.clone(),
                    env: pod::triton_env(options),
                    resources: pod::triton_resources(options),
                    volume_mounts: vec![pod::backend_mount(true)],
                },
                init_containers: vec![pod::backend_installer(options)],
                volumes: vec![pod::backend_volume()],
                node_selector: pod::node_selector(options),
                service_account_name: options.service_account.clone(),
                image_pull_secrets: pod::image_pull_secrets(options),
            },
        },
    }
}
