"""Alarms that reach someone, and one dashboard per deployment for training and serving.

Every alarm notifies one SNS topic when it fires and when it recovers. The topic is encrypted with
its own KMS key and refuses publishing without TLS; CloudWatch may publish to it (and use the key)
only for this deployment's alarms. The dashboard `<prefix>-overview` shows the endpoint's traffic,
latency, errors and instances, and the training run's EMF metrics (training/emf.py): loss, recall
and samples/s per epoch, and where the bootstrap's minutes went.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.secure_defaults import encryption_key
from stacks.settings import Settings
from training import emf

ENDPOINT_METRICS = "AWS/SageMaker"
INSTANCE_METRICS = "/aws/sagemaker/Endpoints"
PERIOD = Duration.minutes(5)
LATENCY_ALARM_MICROSECONDS = 500_000
CPU_ALARM_SHARE = 0.8  # of all vCPUs; CPUUtilization adds up every core's percentage
MEMORY_ALARM_PERCENT = 85
WIDE, HALF = 24, 12


class Monitoring(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, endpoint_name: str, variant: str, vcpus: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.vcpus = vcpus
        self.endpoint_dimensions = {"EndpointName": endpoint_name, "VariantName": variant}
        self.topic_key, self.topic = self._topic()
        self.alarms = self._alarms()
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{settings.prefix}-overview",
            widgets=[self._serving_widgets(), *([self._training_widgets()] if settings.trains else [])],
        )

    def _topic(self) -> tuple[kms.Key, sns.Topic]:
        stack = Stack.of(self)
        own_alarms = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{self.settings.prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        from_own_alarms = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": own_alarms},
        }
        key = encryption_key(self, "AlarmTopicKey", "Encrypts the alarm notifications topic")
        # CloudWatch encrypts what it publishes to an SSE topic with the topic's key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAppEncryptNotifications",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions=from_own_alarms,
            )
        )
        topic = sns.Topic(
            self, "AlarmTopic", topic_name=f"{self.settings.prefix}-alarms", master_key=key, enforce_ssl=True
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAppPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions=from_own_alarms,
            )
        )
        if self.settings.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(self.settings.alarm_email))
        return key, topic

    def _endpoint_metric(self, name: str, statistic: str, namespace: str = ENDPOINT_METRICS) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map=self.endpoint_dimensions,
            statistic=statistic,
            period=PERIOD,
        )

    def _alarm(
        self,
        metric: cloudwatch.Metric | cloudwatch.MathExpression,
        name: str,
        reason: str,
        threshold: float,
        periods: int,
    ) -> cloudwatch.Alarm:
        return metric.create_alarm(
            self,
            name,
            alarm_name=f"{self.settings.prefix}-endpoint-{name}",
            alarm_description=reason,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _alarms(self) -> list[cloudwatch.Alarm]:
        """Each alarm: its metric, threshold, 5-minute periods it must hold for, and why an owner cares."""
        metric = self._endpoint_metric
        model_errors = cloudwatch.MathExpression(
            expression="FILL(failed, 0) - FILL(client, 0)",
            using_metrics={
                "failed": metric("InvocationModelErrors", "Sum"),
                "client": metric("Invocation4XXErrors", "Sum"),
            },
            label="model errors (not client 4xx)",
            period=PERIOD,
        )
        table: dict[str, tuple[cloudwatch.Metric | cloudwatch.MathExpression, float, int, str]] = {
            "5xx": (
                metric("Invocation5XXErrors", "Sum"),
                1,
                1,
                "Callers got 5XX answers in the last 5 minutes: the endpoint or its model failed them.",
            ),
            "model-errors": (
                model_errors,
                1,
                1,
                "The model container failed requests (crash, timeout, malformed answer) in the last 5 minutes; "
                "requests it refused as bad input (4XX) are not counted.",
            ),
            "model-latency": (
                metric("ModelLatency", "p99"),
                LATENCY_ALARM_MICROSECONDS,
                3,
                "p99 model latency above 500 ms for 15 minutes: callers wait; check the instance type, "
                "inferenceMode and the autoscaling range.",
            ),
            "cpu": (
                metric("CPUUtilization", "Average", INSTANCE_METRICS),
                CPU_ALARM_SHARE * 100 * self.vcpus,
                3,
                f"CPU above {CPU_ALARM_SHARE:.0%} of all vCPUs for 15 minutes: the instances are saturated "
                "although autoscaling tracks invocations; raise autoscalingMaxCapacity or the instance size.",
            ),
            "memory": (
                metric("MemoryUtilization", "Average", INSTANCE_METRICS),
                MEMORY_ALARM_PERCENT,
                3,
                f"Memory above {MEMORY_ALARM_PERCENT}% for 15 minutes: the workers are close to being killed "
                "for lack of memory; use a larger instance or fewer workers.",
            ),
        }
        return [self._alarm(source, name, why, limit, periods) for name, (source, limit, periods, why) in table.items()]

    def _serving_widgets(self) -> list[cloudwatch.IWidget]:
        metric = self._endpoint_metric
        return [
            cloudwatch.TextWidget(markdown=f"# Serving: {self.settings.endpoint_name}", width=WIDE, height=1),
            cloudwatch.GraphWidget(
                title="Invocations",
                left=[metric("Invocations", "Sum"), metric("InvocationsPerInstance", "Sum")],
                width=HALF,
            ),
            cloudwatch.GraphWidget(
                title="Errors",
                left=[
                    metric(name, "Sum")
                    for name in ("Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors")
                ],
                width=HALF,
            ),
            cloudwatch.GraphWidget(
                title="Latency (microseconds)",
                left=[metric(name, stat) for name in ("ModelLatency", "OverheadLatency") for stat in ("p50", "p99")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=LATENCY_ALARM_MICROSECONDS, label="p99 alarm")],
                width=HALF,
            ),
            cloudwatch.GraphWidget(
                title="CPU and memory (CPU: % summed over vCPUs)",
                left=[metric("CPUUtilization", "Average", INSTANCE_METRICS)],
                right=[metric("MemoryUtilization", "Average", INSTANCE_METRICS)],
                width=HALF,
            ),
            cloudwatch.GraphWidget(
                title="Instances (each reports CPU once a minute)",
                left=[
                    self._endpoint_metric("CPUUtilization", "SampleCount", INSTANCE_METRICS).with_(
                        period=Duration.minutes(1), label="instances"
                    )
                ],
                width=WIDE,
            ),
        ]

    def _training_metric(self, name: str, **dimensions: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.settings.metrics_namespace,
            metric_name=name,
            dimensions_map={emf.RUN_DIMENSION: self.settings.run_id, **dimensions},
            statistic="Maximum",
            period=Duration.minutes(1),
        )

    def _training_widgets(self) -> list[cloudwatch.IWidget]:
        run = self._training_metric
        return [
            cloudwatch.TextWidget(markdown=f"# Training: run {self.settings.run_id}", width=WIDE, height=1),
            cloudwatch.GraphWidget(title="Loss per epoch", left=[run(emf.TRAIN_LOSS), run(emf.EVAL_LOSS)], width=HALF),
            cloudwatch.GraphWidget(
                title="Eval macro recall and samples/s per epoch",
                left=[run(emf.EVAL_RECALL)],
                right=[run(emf.SAMPLES_PER_SECOND)],
                width=HALF,
            ),
            cloudwatch.GraphWidget(
                title="Where the deploy's minutes went: seconds per bootstrap step",
                left=[
                    run(emf.STEP_SECONDS, **{emf.STEP_DIMENSION: step}).with_(label=step) for step in emf.TIMED_STEPS
                ],
                view=cloudwatch.GraphWidgetView.BAR,
                set_period_to_time_range=True,
                width=WIDE,
            ),
        ]
