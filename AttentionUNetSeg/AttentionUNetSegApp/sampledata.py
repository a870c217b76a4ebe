"""The bundled abdominal CT in the Sample Data module (loaded from the module's own folder, no download)."""
import slicer
from AttentionUNetSegLib.models.bundled_data import SAMPLE_CT

SAMPLE_NAME = "AttentionUNetSegAbdomenCT"
SAMPLE_SHA256 = "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"


def registerSampleData() -> None:
    """Register the sample CT in the Sample Data module."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="AttentionUNetSeg",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(SAMPLE_CT.parents[1] / "Icons" / "AttentionUNetSeg.png"),
        uris=SAMPLE_CT.as_uri(),
        fileNames=f"{SAMPLE_NAME}.nii.gz",
        checksums=f"SHA256:{SAMPLE_SHA256}",
        nodeNames=SAMPLE_NAME,
    )


def loadSampleCT() -> slicer.vtkMRMLScalarVolumeNode:
    """The sample CT as a volume node in the scene."""
    import SampleData

    registerSampleData()
    return SampleData.downloadSample(SAMPLE_NAME)
