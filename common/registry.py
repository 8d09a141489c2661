"""Every dataset the five papers use: files, upstream URLs, checksums, sizes, how to unpack.

Sources: ``../shared/data/*/SOURCE.md`` (the offline mirror's provenance notes). A file whose
checksum is not known (it could not be brought to the offline machines) is registered with
``sha256=None``: it is then verified by size (when known) and format only, and the log says so.
Where only a git blob id is known (``git_blob``), that is verified instead: it is a SHA-1 of the
exact bytes and is as binding as a sha256.

A file can come from a direct URL (``url``) or as a member of an upstream archive
(``archive``): the archive is downloaded once, the member extracted and verified. A mirror folder
holds files already unpacked, under ``<mirror>/<dataset>/<path>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Archive:
    """An upstream archive holding several registered files."""

    url: str
    name: str  # file name in the cache's .archives folder
    kind: str  # "zip" | "rar" (rar: multi-part allowed, needs bsdtar/unrar/7z)
    parts: tuple[str, ...] = ()  # further URLs of a multi-part archive, in order
    sha256: Optional[str] = None


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the dataset folder
    sha256: Optional[str] = None
    size: Optional[int] = None
    url: Optional[str] = None  # direct upstream URL
    archive: Optional[Archive] = None
    member: Optional[str] = None  # path inside ``archive``
    git_blob: Optional[str] = None  # used when no sha256 is known
    fmt: str = "any"  # "pickle" | "text" | "any": format check when no checksum is known
    note: str = ""  # e.g. why it is missing from the mirror


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    used_by: tuple[str, ...]
    files: tuple[FileSpec, ...]
    homepage: str = ""
    notes: str = ""

    def file(self, path: str) -> FileSpec:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(
            f"dataset {self.name!r} has no file {path!r}; registered: {[f.path for f in self.files]}"
        )


_MBGMN = "https://github.com/akaxlh/MB-GMN/raw/a45e7f7eca090cee1608d667d9430eddc2a1d739/Datasets"
_AGNN = "https://github.com/lylbaidu/AGNN/raw/10567ecbcd43877cb988ab98111561ea480bd26b/ml100k"
_MPM = "https://github.com/chenjie04/MPM/raw/e74dec11fb031c24a6f705e7fbf207182abcefd6/data/ml-1m"
_SRGNN = "https://github.com/CRIPAC-DIG/SR-GNN/raw/e21cfa431f74c25ae6e4ae9261deefe11d1cb488/datasets"
_GCEGNN = "https://github.com/CCIIPLab/GCE-GNN/raw/212575302e42d64b8cf0b9ffe1b71b0db398d5be/datasets/diginetica"
_DGNN = (
    "https://github.com/YuhanZhen/WSDM23-DGNNs--for-Session-based-Recommendation/raw/"
    "a1f246cc2e4914582829fdb15b89b6c0bdbadd81/datasets/yoochoose1_64"
)
_ML = "https://files.grouplens.org/datasets/movielens"
_ML100K_ZIP = Archive(f"{_ML}/ml-100k.zip", "ml-100k.zip", "zip")
_ML1M_ZIP = Archive(f"{_ML}/ml-1m.zip", "ml-1m.zip", "zip")
_ML10M_ZIP = Archive(f"{_ML}/ml-10m.zip", "ml-10m.zip", "zip")
_ML20M_ZIP = Archive(f"{_ML}/ml-20m.zip", "ml-20m.zip", "zip")
_TMALL_PV_RAR = Archive(
    f"{_MBGMN}/Tmall/trn_pv.part01.rar",
    "trn_pv.part01.rar",
    "rar",
    parts=tuple(f"{_MBGMN}/Tmall/trn_pv.part0{i}.rar" for i in range(2, 7)),
)
_RECOHUT_ML1M = (
    "https://github.com/RecoHut-Datasets/movielens_1m/raw/fde8b025e129e2e2cc29e268d18bd4795e9453a9"
)


def _ml100k_member(name: str, sha: str, size: int) -> FileSpec:
    return FileSpec(name, sha, size, archive=_ML100K_ZIP, member=f"ml-100k/{name}")


_DATASETS = [
    Dataset(
        "beibei",
        "MB-GMN's Beibei: CSR user x item matrices per behaviour (pv, cart, buy) and tst_int.",
        ("mbgmn_tf",),
        (
            FileSpec("trn_pv", "43d3e8b9ec1b54995c10570d888f9d062d9af699f42c957f39fc3dc318d91b60", 19387960, f"{_MBGMN}/beibei/trn_pv"),
            FileSpec("trn_cart", "04cbb6c0b6c232ced06b8fea7ac7b28fd07af9a9a2c3f70c9df5c6186c8da890", 5228248, f"{_MBGMN}/beibei/trn_cart"),
            FileSpec("trn_buy", "5c38fbeb2cd2c738a2a0f67de0803d94cb90be1c2ce9abe5f49f03c7a3a72a5b", 2350152, f"{_MBGMN}/beibei/trn_buy"),
            FileSpec("tst_int", "f6465bad33be97f6d1fa77ed4ad697fad4810083c7ee19c05ae9b06cd8c64af9", 281114, f"{_MBGMN}/beibei/tst_int"),
        ),
        homepage="https://github.com/akaxlh/MB-GMN/tree/main/Datasets/beibei",
    ),
    Dataset(
        "tmall",
        "MB-GMN's Tmall: CSR user x item matrices per behaviour (pv, fav, cart, buy) and tst_int.",
        ("mbgmn_tf",),
        (
            FileSpec("trn_pv", archive=_TMALL_PV_RAR, member="trn_pv", fmt="pickle",
                     note="shipped upstream as a 6-part RAR; not in the offline mirror"),
            FileSpec("trn_fav", "0bdbf14d588a3054926db7b42378a46f635d3aca1d0bf362f77567a63aaae691", 2728995, f"{_MBGMN}/Tmall/trn_fav"),
            FileSpec("trn_cart", url=f"{_MBGMN}/Tmall/trn_cart", fmt="pickle",
                     note="not in the offline mirror; checksum unknown"),
            FileSpec("trn_buy", url=f"{_MBGMN}/Tmall/trn_buy", fmt="pickle",
                     note="not in the offline mirror; checksum unknown"),
            FileSpec("tst_int", "25ea952849af72b7a08a11638f7eb36cffc4c2912b5b08b49dc47e19dbc6a1d3", 172140, f"{_MBGMN}/Tmall/tst_int"),
        ),
        homepage="https://github.com/akaxlh/MB-GMN/tree/main/Datasets/Tmall",
    ),
    Dataset(
        "agnn-ml100k",
        "AGNN authors' preprocessed ML-100k: uiinfo.pkl, neighbour pickles, {ics,ucs,warm}_{train,val}.dat.",
        ("agnn",),
        (
            FileSpec("uiinfo.pkl", "235338d19d6c37ed910e8ef779eda6bdba2838e683fce43dcc2deede8c3ddd6a", 43891, f"{_AGNN}/uiinfo.pkl"),
            FileSpec("neighbor_aspect_extension_2_zscore_ics_uuii_0.20.pkl", url=f"{_AGNN}/neighbor_aspect_extension_2_zscore_ics_uuii_0.20.pkl",
                     fmt="pickle", note="missing from the offline mirror; use `--graph built` for ICS"),
            FileSpec("neighbor_aspect_extension_2_zscore_ucs_uuii.pkl", "5bc52bde484b353b4726f9d1de1e7b236c689357eae79f72cbeaf6702ce16494", 3268955,
                     f"{_AGNN}/neighbor_aspect_extension_2_zscore_ucs_uuii.pkl"),
            FileSpec("neighbor_aspect_extension_2_zscore_warm_uuii.pkl", "41c6f4433d59eaa78c8abc0f711c9dcd16ffe0cd24f5e63aa5f5a2019cc26a5b", 3268955,
                     f"{_AGNN}/neighbor_aspect_extension_2_zscore_warm_uuii.pkl"),
            FileSpec("ics_train.dat", "e78efbb3454d168adb10fa834d4ae35db8c2172ffe3a7d4f23ff27ace02ec3a3", 1048422, f"{_AGNN}/ics_train.dat"),
            FileSpec("ics_val.dat", "fa0592ae03b806ed01102f775670f702f6d279edf89e5828a8933195c83eb1d9", 230751, f"{_AGNN}/ics_val.dat"),
            FileSpec("ucs_train.dat", "b78dc2f709615861d6f2dfc6fc122640e5ba0b3c906115219b66a0216bcf9b65", 1016768, f"{_AGNN}/ucs_train.dat"),
            FileSpec("ucs_val.dat", "9332804a7bb4a5ef90723a757a6155d766e90f403281a79c0a106b3899c6b49d", 262405, f"{_AGNN}/ucs_val.dat"),
            FileSpec("warm_train.dat", "487516f7388804d94475b659cdca663f00f6a620b70d35b2e4b84b05e4b8c1ed", 1023413, f"{_AGNN}/warm_train.dat"),
            FileSpec("warm_val.dat", "143dc7c03201e7c12fc8904318c9f116d0fcd14e97071f0ca2f18d57f73a1383", 255760, f"{_AGNN}/warm_val.dat"),
            FileSpec("source_data/item_content.dat", "510f86068111fc3badfb295635942467f2e8f133d5a655cd90567cb9e42ea9ae", 391675,
                     f"{_AGNN}/source_data/item_content.dat"),
            FileSpec("source_data/item_url_all.dat", "480382aa31c67c738db9a59015aec118d05b178a78c06ad2dd7f65c5ad8b4d5e", 149252,
                     f"{_AGNN}/source_data/item_url_all.dat"),
        ),
        homepage="https://github.com/lylbaidu/AGNN",
    ),
    Dataset(
        "ml-100k",
        "Raw MovieLens-100K (u.data user/item/rating/timestamp, u.user, u.item, ...).",
        ("agnn", "mpm", "gcsan"),
        (
            _ml100k_member("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490", 1979173),
            _ml100k_member("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c", 22628),
            _ml100k_member("u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701", 236344),
            _ml100k_member("u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb", 202),
            _ml100k_member("u.occupation", "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d", 193),
            _ml100k_member("u.info", "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b", 36),
            _ml100k_member("README", "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52", 6750),
        ),
        homepage="https://grouplens.org/datasets/movielens/100k/",
    ),
    Dataset(
        "ml-1m",
        "MovieLens-1M. ratings.dat (UserID::MovieID::Rating::Timestamp) is not in the offline mirror; "
        "the mirror holds users.dat, movies.dat, README and all ratings without timestamps as 5 folds.",
        ("mpm", "gcsan"),
        (
            FileSpec("ratings.dat", archive=_ML1M_ZIP, member="ml-1m/ratings.dat",
                     git_blob="77a7c4b150f588c23bb9e1f068aa996c0b413695", fmt="text",
                     note="not in the offline mirror (too large for the snapshots)"),
            FileSpec("users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3", 134368, archive=_ML1M_ZIP, member="ml-1m/users.dat"),
            FileSpec("movies.dat", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9", 171308, archive=_ML1M_ZIP, member="ml-1m/movies.dat"),
            FileSpec("README", "2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133", 5577, archive=_ML1M_ZIP, member="ml-1m/README"),
        )
        + tuple(
            FileSpec(f"ratings_5fold_no_timestamp/test_1m{i}.dat", sha, size, f"{_RECOHUT_ML1M}/test_1m{i}.dat")
            for i, (sha, size) in enumerate(
                [
                    ("0ceed1eae31fa0f3dd8bea5209336b7b9456830ef26ae8f74a39f3b9b64a5268", 2310985),
                    ("92b945ad0ed8e8b0cefd8bced7f7e112147965d40385d75cb33182c0cfbd6dd5", 2310515),
                    ("bc0e086ea8eb19b6fe301dc5e10abb30549191827cc439cb8148dbff206d5da0", 2311137),
                    ("ac94bfcdaecb002b545b9815e2360ad5bb4d3d1a2ef608e7b7e05ceb043a0113", 2310443),
                    ("619d54e035569f3ba67b4b9b8e580cef3d773ad2b6d99eecc2483e631334a55d", 2310376),
                ],
                start=1,
            )
        ),
        homepage="https://grouplens.org/datasets/movielens/1m/",
    ),
    Dataset(
        "ml-10m",
        "MovieLens-10M (ratings.dat UserID::MovieID::Rating::Timestamp). Not in the offline mirror.",
        ("mpm",),
        (FileSpec("ratings.dat", archive=_ML10M_ZIP, member="ml-10M100K/ratings.dat", fmt="text",
                  note="not in the offline mirror; checksum unknown"),),
        homepage="https://grouplens.org/datasets/movielens/10m/",
    ),
    Dataset(
        "ml-20m",
        "MovieLens-20M (ratings.csv userId,movieId,rating,timestamp). Not in the offline mirror.",
        ("mpm",),
        (FileSpec("ratings.csv", archive=_ML20M_ZIP, member="ml-20m/ratings.csv", fmt="text",
                  note="not in the offline mirror; checksum unknown"),),
        homepage="https://grouplens.org/datasets/movielens/20m/",
    ),
    Dataset(
        "mpm-ml-1m",
        "MPM authors' processed ML-1m split (data_summary.csv, test_ratings.csv, test_negative.csv).",
        ("mpm",),
        (
            FileSpec("data_summary.csv", "5dd3c091167e763605463be6d9cc8be61acfafa35bf504ac3a4dea6139f21788", 68, f"{_MPM}/data_summary.csv"),
            FileSpec("test_ratings.csv", "a2162c0141b5f81b66feb4ecceb54a7a08eece6e831c13f1bc73c6b05d14d3cc", 297288, f"{_MPM}/test_ratings.csv"),
            FileSpec("test_negative.csv", "88a2e2cc631669a9f6f8efe95975c895fdb578d8ab5ae2cbc3f1a82fb7adcd06", 2879673, f"{_MPM}/test_negative.csv"),
            FileSpec("train_ratings.csv", url=f"{_MPM}/train_ratings.csv", fmt="text",
                     note="missing from the offline mirror; checksum unknown"),
        ),
        homepage="https://github.com/chenjie04/MPM",
    ),
    Dataset(
        "srgnn-sample",
        "SR-GNN's sample of the Diginetica click log (sessionId;userId;itemId;timeframe;eventdate).",
        ("fgnn", "gcsan"),
        (FileSpec("sample_train-item-views.csv", "98da96e05c87ef12b739e4bfd9bc7b4864106ee77371f1db9eb4413e3f78d37e", 395354,
                  f"{_SRGNN}/sample_train-item-views.csv"),),
        homepage="https://github.com/CRIPAC-DIG/SR-GNN",
    ),
    Dataset(
        "diginetica",
        "Raw CIKM Cup 2016 Diginetica click log train-item-views.csv. Not in the offline mirror; the "
        "competition site requires a manual download.",
        ("fgnn", "gcsan"),
        (FileSpec("train-item-views.csv", fmt="text",
                  note="manual download from the CIKM Cup 2016 site (registration); checksum unknown"),),
        homepage="https://competitions.codalab.org/competitions/11161",
    ),
    Dataset(
        "diginetica-srgnn",
        "Diginetica after SR-GNN's preprocess.py: train.txt / test.txt pickles of (seqs, labels), all_train_seq.txt.",
        ("fgnn", "gcsan"),
        (
            FileSpec("train.txt", "bc0f5ef2930fbf05ddf25bcb6ded9215968326035fbacac3b40f90d12b9ff82f", 16580585, f"{_GCEGNN}/train.txt"),
            FileSpec("test.txt", "b2b81f9cb22feb2174feeb3e678b9de5e41ff1653bf23cdaf9046e5404f002ff", 1384823, f"{_GCEGNN}/test.txt"),
            FileSpec("all_train_seq.txt", "55694865221c682aaa9df6cd5a4ddccff5de902334df5605c5767ee464e11365", 4193626, f"{_GCEGNN}/all_train_seq.txt"),
        ),
        homepage="https://github.com/CRIPAC-DIG/SR-GNN",
    ),
    Dataset(
        "yoochoose",
        "Raw RecSys Challenge 2015 yoochoose-clicks.dat. Not in the offline mirror (about 1.4 GB).",
        ("fgnn",),
        (FileSpec("yoochoose-clicks.dat", fmt="text",
                  note="manual download from the RecSys Challenge 2015 site; checksum unknown"),),
        homepage="http://2015.recsyschallenge.com/challenge.html",
    ),
    Dataset(
        "yoochoose1_64-srgnn",
        "Yoochoose 1/64 after SR-GNN's preprocess.py: train.txt / test.txt pickles, all_train_seq.txt.",
        ("fgnn", "gcsan"),
        (
            FileSpec("train.txt", "56c29bddee0ceb4b831b79047571651db16fd89225d0ce9df6e3ce02b9edbd2f", 9595675, f"{_DGNN}/train.txt"),
            FileSpec("test.txt", "3006ec5cb4b695261efd7b2c5780586b0a5e95e948013e356de8fe45188b6375", 1508454, f"{_DGNN}/test.txt"),
            FileSpec("all_train_seq.txt", "41408f34a4dcfcd406e034fa14e4b2b583d66fedb1b85d1257645797b94988ae", 2379816, f"{_DGNN}/all_train_seq.txt"),
        ),
        homepage="https://github.com/CRIPAC-DIG/SR-GNN",
    ),
    Dataset(
        "retailrocket-cotrec",
        "Retailrocket as preprocessed by COTREC (all_train_seq.txt, test.txt). Bonus; train.txt not available.",
        (),
        (
            FileSpec("all_train_seq.txt", "dcb31faa5037c527b516b4d8e3aa6d81b81549e45f4ead3b02ca99c6ecd67181", 3051397,
                     "https://github.com/RecoHut-Datasets/retail_rocket/raw/881d639e3af124dff47b4570c0ca1ce1c859b89c/all_train_seq.txt"),
            FileSpec("test.txt", "212345e160a899fb64451aa1288407fdf65816e8c128905bd98784bce1256c85", 503785,
                     "https://github.com/RecoHut-Datasets/retail_rocket/raw/881d639e3af124dff47b4570c0ca1ce1c859b89c/test.txt"),
        ),
        homepage="https://www.dropbox.com/sh/j12um64gsig5wqk/AADD1EKn_oXxYkt21NGx4KPQa/RetailRocket",
    ),
]

DATASETS: dict[str, Dataset] = {d.name: d for d in _DATASETS}
