# A cleaning of the raw Palmer penguins records as published in a public notebook: kept beside
# the task so that similarity flags submissions copied from it. Never given to candidates.
import pandas as pd

df = pd.read_csv("/data/input/penguins_raw.csv", dtype=str, keep_default_na=False)
df = df.drop_duplicates("row_id")

def to_num(s):
    s = s.strip().replace(",", ".")
    if s.lower() in ("", "na", "nan", "null", "?", "n/a"):
        return None
    return float(s)

def mass(s):
    s = s.strip().lower()
    if s.endswith("kg"):
        return round(float(s[:-2].replace(",", ".")) * 1000)
    v = to_num(s)
    return None if v is None else round(v)

def egg_year(s):
    s = s.strip()
    return int(s.split("/")[-1]) if "/" in s else int(s.split("-")[0])

out = pd.DataFrame()
out["row_id"] = df["row_id"]
out["species"] = df["Species"].apply(lambda s: s.split()[0].capitalize())
out["island"] = df["Island"].str.strip()
out["bill_length_mm"] = df["Culmen Length (mm)"].apply(to_num)
out["bill_depth_mm"] = df["Culmen Depth (mm)"].apply(to_num)
out["flipper_length_mm"] = df["Flipper Length (mm)"].apply(to_num).astype("Int64")
out["body_mass_g"] = df["Body Mass (g)"].apply(mass).astype("Int64")
out["sex"] = df["Sex"].str.strip().str.lower().where(lambda s: s.isin(["male", "female"]))
out["year"] = df["Date Egg"].apply(egg_year)
out.to_csv("/output/penguins_clean.csv", index=False, na_rep="NA")
